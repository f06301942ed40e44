/**
 * The plugin's statistics: what it presented, what it copied, and how long a flush waited before
 * the commit that showed it. Updated on every frame, so the hot methods allocate nothing: latency
 * samples go into a preallocated ring; percentiles are computed only when someone reads them.
 */

/** A fixed-size ring of latency samples in microseconds. */
export class LatencyRing {
  private readonly samples: Float64Array;
  private readonly scratch: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(readonly capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`latency ring capacity must be a positive integer, got ${capacity}`);
    }
    this.samples = new Float64Array(capacity);
    this.scratch = new Float64Array(capacity);
  }

  /** Records one sample; the oldest one is overwritten once the ring is full. */
  record(microseconds: number): void {
    this.samples[this.next] = microseconds;
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
    if (this.filled < this.capacity) this.filled++;
  }

  /**
   * Records the time from `startMs` (a `performance.now()` reading) until now; returns it in µs.
   * A double clock, not hrtime.bigint(): reading it allocates nothing.
   */
  recordSince(startMs: number): number {
    const microseconds = (performance.now() - startMs) * 1000;
    this.record(microseconds);
    return microseconds;
  }

  get count(): number {
    return this.filled;
  }

  /**
   * The p-th percentile (0..100, nearest-rank) over the samples in the ring, or null when empty.
   * Sorts a copy in the preallocated scratch buffer.
   */
  percentile(p: number): number | null {
    if (this.filled === 0) return null;
    if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
    const view = this.scratch.subarray(0, this.filled);
    view.set(this.samples.subarray(0, this.filled));
    view.sort();
    const rank = Math.max(1, Math.ceil((p / 100) * this.filled));
    return view[rank - 1];
  }

  clear(): void {
    this.next = 0;
    this.filled = 0;
  }
}

/** Which path a head's frames take to the compositor. */
export type PresentPath = 'dmabuf' | 'shm-direct' | 'shm-copy';

/** A plain copy of the statistics at one moment. */
export interface StatsSnapshot {
  framesPresented: number;
  bytesCopied: number;
  dmabufsLive: number;
  /** The reason the first fallback happened, null while every buffer went zero-copy. */
  fallbackReason: string | null;
  /** How many buffers were set up on a fallback path. */
  fallbacks: number;
  /** Copy-fallback buffers alive, their shm bytes and their mappings of guest memory (all sources). */
  copyBuffers: number;
  copyBytes: number;
  copyMappings: number;
  /** Copy buffers destroyed to make room for newer ones (the per-source LRU). */
  copyEvictions: number;
  /** Flush arrival to commit, in microseconds, over the last `handoffSamples` frames. */
  handoffP50Us: number | null;
  handoffP99Us: number | null;
  handoffSamples: number;
}

export class PluginStats {
  framesPresented = 0;
  bytesCopied = 0;
  dmabufsLive = 0;
  fallbackReason: string | null = null;
  fallbacks = 0;
  copyBuffers = 0;
  copyBytes = 0;
  copyMappings = 0;
  copyEvictions = 0;
  readonly handoff: LatencyRing;

  constructor(ringCapacity = 1024) {
    this.handoff = new LatencyRing(ringCapacity);
  }

  /** Counts a fallback; returns true the first time a given reason is seen (log it then). */
  noteFallback(reason: string): boolean {
    this.fallbacks++;
    if (this.fallbackReason === null) {
      this.fallbackReason = reason;
      this.seenReasons.add(reason);
      return true;
    }
    if (this.seenReasons.has(reason)) return false;
    this.seenReasons.add(reason);
    return true;
  }

  private readonly seenReasons = new Set<string>();

  snapshot(): StatsSnapshot {
    return {
      framesPresented: this.framesPresented,
      bytesCopied: this.bytesCopied,
      dmabufsLive: this.dmabufsLive,
      fallbackReason: this.fallbackReason,
      fallbacks: this.fallbacks,
      copyBuffers: this.copyBuffers,
      copyBytes: this.copyBytes,
      copyMappings: this.copyMappings,
      copyEvictions: this.copyEvictions,
      handoffP50Us: this.handoff.percentile(50),
      handoffP99Us: this.handoff.percentile(99),
      handoffSamples: this.handoff.count,
    };
  }
}

function formatMicros(value: number | null): string {
  return value === null ? 'n/a' : `${value.toFixed(1)} µs`;
}

/** Human-readable lines for the CLI. */
export function formatStats(stats: StatsSnapshot): string {
  const lines = [
    `frames presented: ${stats.framesPresented}`,
    `bytes copied:     ${stats.bytesCopied}`,
    `dma-bufs live:    ${stats.dmabufsLive}`,
    `fallback:         ${stats.fallbackReason === null ? 'none (zero-copy)' : `${stats.fallbackReason} (${stats.fallbacks} buffer(s))`}`,
    `copy buffers:     ${stats.copyBuffers} (${stats.copyBytes} bytes, ${stats.copyMappings} mapping(s) of guest memory, ${stats.copyEvictions} evicted)`,
    `handoff latency:  p50 ${formatMicros(stats.handoffP50Us)}, p99 ${formatMicros(stats.handoffP99Us)} over ${stats.handoffSamples} frame(s)`,
  ];
  return lines.join('\n');
}
