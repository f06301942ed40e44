/**
 * The copy fallback's budget for one device (one source): how many copy buffers it may keep,
 * how many bytes of shm they may take and how many mappings of guest memory their copiers may
 * hold. Copy buffers are cached per head and resource (a guest flips between a few), in LRU
 * order: making a new one first evicts the least recently shown buffers that no window shows.
 * A buffer that cannot fit even then (the ones on screen hold the budget, or it alone is over a
 * limit) is refused, and the caller logs which limit.
 *
 * Eviction destroys the buffer: its wl_buffer, its shm memfd mapping (the compositor closes its
 * pool fd) and its copier's mappings go.
 */

export interface CopyLimits {
  /** Copy buffers kept per device (cached and on screen). */
  maxBuffers: number;
  /** Bytes of shm (packed copies) those buffers may take together. */
  maxBytes: number;
  /** Mappings of guest memory their copiers may hold together. */
  maxMappings: number;
}

export const DEFAULT_COPY_LIMITS: Readonly<CopyLimits> = Object.freeze({
  maxBuffers: 16,
  maxBytes: 512 * 1024 * 1024,
  maxMappings: 1024,
});

/** Checks caller-given limits (positive safe integers) and fills in defaults. */
export function copyLimits(given: Partial<CopyLimits> = {}): CopyLimits {
  const limits = { ...DEFAULT_COPY_LIMITS, ...given };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`copy limit ${name} must be a positive integer, got ${String(value)}`);
    }
  }
  return limits;
}

/** How the budget reaches a tracked buffer's owner. */
export interface CopyOwner {
  /** Whether a window shows the buffer now (it is never evicted then). */
  inUse(): boolean;
  /** Drops the buffer from its cache and destroys it (which calls `untrack`). */
  evict(): void;
}

interface Entry {
  bytes: number;
  mappings: number;
  owner: CopyOwner;
}

/** Totals, summed over every device (the plugin's statistics). */
export interface CopyTotals {
  copyBuffers: number;
  copyBytes: number;
  copyMappings: number;
  copyEvictions: number;
}

export class CopyBudget {
  /** Insertion order is recency: touch() moves an entry to the end. */
  private readonly entries = new Map<object, Entry>();
  private bytes = 0;
  private mappings = 0;
  readonly limits: CopyLimits;

  /** @param totals shared across devices; this budget adds and subtracts its own part. */
  constructor(
    limits: Partial<CopyLimits> = {},
    private readonly totals?: CopyTotals,
  ) {
    this.limits = copyLimits(limits);
  }

  get count(): number {
    return this.entries.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  get totalMappings(): number {
    return this.mappings;
  }

  /**
   * Makes room for a buffer of `bytes` whose copier holds `mappings` mappings, evicting least
   * recently used buffers no window shows. Returns null when it fits, else which limit refuses it.
   */
  admit(bytes: number, mappings: number): string | null {
    const { maxBuffers, maxBytes, maxMappings } = this.limits;
    if (bytes > maxBytes) return `one copy buffer of ${bytes} bytes is over maxBytes ${maxBytes}`;
    if (mappings > maxMappings) {
      return `one copy buffer needing ${mappings} mappings is over maxMappings ${maxMappings}`;
    }
    const fits = () =>
      this.entries.size + 1 <= maxBuffers &&
      this.bytes + bytes <= maxBytes &&
      this.mappings + mappings <= maxMappings;
    for (const [buffer, entry] of [...this.entries]) {
      if (fits()) break;
      if (entry.owner.inUse()) continue;
      entry.owner.evict();
      // An owner that failed to destroy it must not keep it counted against the budget forever.
      if (this.entries.has(buffer)) this.untrack(buffer);
      if (this.totals) this.totals.copyEvictions++;
    }
    if (fits()) return null;
    return (
      `copy buffers on screen hold the budget (${this.entries.size} of maxBuffers ${maxBuffers}, ` +
      `${this.bytes} of maxBytes ${maxBytes}, ${this.mappings} of maxMappings ${maxMappings})`
    );
  }

  /** Counts a buffer made after admit(); it becomes the most recently used. */
  track(buffer: object, bytes: number, mappings: number, owner: CopyOwner): void {
    if (this.entries.has(buffer)) return;
    this.entries.set(buffer, { bytes, mappings, owner });
    this.add(1, bytes, mappings);
  }

  /** The buffer was shown again: most recently used. */
  touch(buffer: object): void {
    const entry = this.entries.get(buffer);
    if (!entry) return;
    this.entries.delete(buffer);
    this.entries.set(buffer, entry);
  }

  /** The buffer was destroyed. */
  untrack(buffer: object): void {
    const entry = this.entries.get(buffer);
    if (!entry) return;
    this.entries.delete(buffer);
    this.add(-1, -entry.bytes, -entry.mappings);
  }

  private add(count: number, bytes: number, mappings: number): void {
    this.bytes += bytes;
    this.mappings += mappings;
    if (!this.totals) return;
    this.totals.copyBuffers += count;
    this.totals.copyBytes += bytes;
    this.totals.copyMappings += mappings;
  }
}
