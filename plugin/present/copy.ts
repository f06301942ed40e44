/**
 * The shm-copy fallback's copier: copies damaged rectangles of a guest framebuffer, whose bytes
 * are scattered over memfd spans, into a tightly packed shm buffer.
 *
 * Only what the framebuffer reads is mapped. A guest may attach far more backing than the
 * scanned-out rectangle needs (a big resource, a stride with wide padding, thousands of spans):
 * `planCopyMappings` walks the framebuffer's rows (offset, stride, height, width in bytes) and
 * keeps, per span, the part those rows touch. Those parts become page-aligned mappings; parts of
 * one fd closer than MERGE_GAP share a mapping, and a framebuffer that would still need more
 * than MAX_MAPPINGS_PER_COPIER mappings gets one window per fd instead. So a copier never holds
 * more than max(MAX_MAPPINGS_PER_COPIER, distinct fds) mappings, however the guest scatters its
 * backing. The mappings are read-only and private to this process (which maps guest RAM for the
 * virtqueues anyway); the compositor sees only the packed copy.
 *
 * Mapping happens once, when the copier is made; a copy allocates nothing (Buffer.copy takes
 * offsets, not views).
 */
import { fd } from '../../native/fd.js';
import { coalesceRanges, type BackingRange, type GuestBuffer } from './plan.js';

const PAGE_SIZE = 4096;
/** Needed parts of one fd this close (bytes between them) share a mapping. */
export const MERGE_GAP = 1024 * 1024;
/** Above this many mappings a copier maps one window per fd instead. */
export const MAX_MAPPINGS_PER_COPIER = 64;

/** One mapping a copier makes: `length` bytes of `fd` from `offset` (both page aligned). */
export interface CopyMapping {
  fd: number;
  offset: number;
  length: number;
}

/** What a copier for a buffer maps, computed without mapping anything. */
export interface CopyPlan {
  /** The backing, coalesced, in framebuffer order. */
  spans: BackingRange[];
  /** Framebuffer-relative byte where each span starts; one extra entry holds the total. */
  spanStarts: Float64Array;
  /** Index into `mappings` of the mapping holding each span's read part; -1: never read. */
  spanMapping: Int32Array;
  mappings: CopyMapping[];
  /** Sum of the mappings' lengths. */
  mappedBytes: number;
}

function pageDown(value: number): number {
  return value - (value % PAGE_SIZE);
}

function pageUp(value: number): number {
  const rest = value % PAGE_SIZE;
  return rest === 0 ? value : value + PAGE_SIZE - rest;
}

/** Index of the span holding framebuffer byte `position` (binary search over `starts`). */
function spanAt(starts: Float64Array, spanCount: number, position: number): number {
  let low = 0;
  let high = spanCount - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (starts[middle] <= position) low = middle;
    else high = middle - 1;
  }
  return low;
}

/**
 * Which parts of the backing the framebuffer's rows read, and how they are mapped. The buffer
 * must have passed validateGuestBuffer (its rows lie inside the backing).
 */
export function planCopyMappings(buffer: GuestBuffer, bytesPerPixel: number): CopyPlan {
  const spans = coalesceRanges(buffer.ranges);
  const spanCount = spans.length;
  const spanStarts = new Float64Array(spanCount + 1);
  let total = 0;
  for (let i = 0; i < spanCount; i++) {
    spanStarts[i] = total;
    total += spans[i].length;
  }
  spanStarts[spanCount] = total;

  // Per span, the lowest and highest framebuffer byte any row reads (-1: none).
  const readFirst = new Float64Array(spanCount).fill(-1);
  const readEnd = new Float64Array(spanCount);
  const rowBytes = buffer.width * bytesPerPixel;
  // Packed rows read one contiguous run; otherwise each row is its own run.
  const packed = buffer.stride === rowBytes;
  const runs = packed ? 1 : buffer.height;
  const runBytes = packed ? rowBytes * buffer.height : rowBytes;
  for (let run = 0; run < runs; run++) {
    const start = buffer.offset + run * buffer.stride;
    const end = start + runBytes;
    let span = spanAt(spanStarts, spanCount, start);
    while (span < spanCount && spanStarts[span] < end) {
      const from = Math.max(start, spanStarts[span]);
      const to = Math.min(end, spanStarts[span + 1]);
      if (readFirst[span] < 0 || from < readFirst[span]) readFirst[span] = from;
      if (to > readEnd[span]) readEnd[span] = to;
      span++;
    }
  }

  // The read part of each span, in fd terms, page aligned.
  const parts: { span: number; fd: number; offset: number; end: number }[] = [];
  for (let i = 0; i < spanCount; i++) {
    if (readFirst[i] < 0) continue;
    const fdOffset = spans[i].offset + (readFirst[i] - spanStarts[i]);
    const fdEnd = spans[i].offset + (readEnd[i] - spanStarts[i]);
    parts.push({ span: i, fd: spans[i].fd, offset: pageDown(fdOffset), end: pageUp(fdEnd) });
  }
  parts.sort((a, b) => a.fd - b.fd || a.offset - b.offset);

  const build = (gap: number): { mappings: CopyMapping[]; spanMapping: Int32Array } => {
    const mappings: CopyMapping[] = [];
    const spanMapping = new Int32Array(spanCount).fill(-1);
    let current: CopyMapping | null = null;
    for (const part of parts) {
      if (
        current &&
        current.fd === part.fd &&
        part.offset <= current.offset + current.length + gap
      ) {
        const end = Math.max(current.offset + current.length, part.end);
        current.length = end - current.offset;
      } else {
        current = { fd: part.fd, offset: part.offset, length: part.end - part.offset };
        mappings.push(current);
      }
      spanMapping[part.span] = mappings.length - 1;
    }
    return { mappings, spanMapping };
  };
  let built = build(MERGE_GAP);
  // Too scattered: one window per fd (bounded by the guest's memory regions).
  if (built.mappings.length > MAX_MAPPINGS_PER_COPIER) built = build(Number.MAX_SAFE_INTEGER);
  let mappedBytes = 0;
  for (const mapping of built.mappings) mappedBytes += mapping.length;
  return {
    spans,
    spanStarts,
    spanMapping: built.spanMapping,
    mappings: built.mappings,
    mappedBytes,
  };
}

export class DamageCopier {
  /** One view per mapping, covering all of it. */
  private readonly mappingViews: Buffer[] = [];
  private readonly mappings: ArrayBuffer[] = [];
  /** Per span: where its first byte would sit in its mapping's view (may be negative when only
   * a later part of the span is mapped; only read parts are ever addressed). */
  private readonly spanBase: Float64Array;
  private readonly plan: CopyPlan;
  readonly targetStride: number;
  private closed = false;

  /**
   * Maps what `plan` (default: planCopyMappings of the buffer) says. Borrows the buffer's memfds
   * (mappings outlive them, but the source keeps them anyway).
   */
  constructor(
    private readonly buffer: GuestBuffer,
    readonly bytesPerPixel: number,
    plan?: CopyPlan,
  ) {
    this.plan = plan ?? planCopyMappings(buffer, bytesPerPixel);
    this.targetStride = buffer.width * bytesPerPixel;
    const { spans, spanMapping, mappings } = this.plan;
    this.spanBase = new Float64Array(spans.length);
    try {
      for (const mapping of mappings) {
        const mapped = fd.mmap(mapping.fd, mapping.offset, mapping.length, false);
        this.mappings.push(mapped);
        this.mappingViews.push(Buffer.from(mapped));
      }
    } catch (error) {
      this.close();
      throw error;
    }
    for (let i = 0; i < spans.length; i++) {
      const index = spanMapping[i];
      if (index >= 0) this.spanBase[i] = spans[i].offset - mappings[index].offset;
    }
  }

  /** Size of the packed target buffer in bytes. */
  get targetSize(): number {
    return this.targetStride * this.buffer.height;
  }

  /** How many mappings this copier holds (0 once closed). */
  get mappingCount(): number {
    return this.mappings.length;
  }

  /** Bytes of guest memory this copier has mapped. */
  get mappedBytes(): number {
    return this.closed ? 0 : this.plan.mappedBytes;
  }

  /**
   * Copies the rectangle (already clipped to the buffer) into `target` (packed, targetStride).
   * Returns the number of bytes copied.
   */
  copyRect(target: Buffer, x: number, y: number, width: number, height: number): number {
    if (this.closed) throw new Error('copier is closed');
    const { spanStarts, spanMapping, spans } = this.plan;
    const bpp = this.bytesPerPixel;
    const rowBytes = width * bpp;
    let copied = 0;
    for (let row = y; row < y + height; row++) {
      let source = this.buffer.offset + row * this.buffer.stride + x * bpp;
      let destination = row * this.targetStride + x * bpp;
      let remaining = rowBytes;
      let span = spanAt(spanStarts, spans.length, source);
      while (remaining > 0) {
        const within = source - spanStarts[span];
        const available = spanStarts[span + 1] - source;
        const chunk = remaining < available ? remaining : available;
        const mapping = spanMapping[span];
        // Unreachable for rects inside the framebuffer: every byte its rows read is mapped.
        if (mapping < 0) throw new Error(`span ${span} is read but was not mapped`);
        const from = this.spanBase[span] + within;
        this.mappingViews[mapping].copy(target, destination, from, from + chunk);
        source += chunk;
        destination += chunk;
        remaining -= chunk;
        copied += chunk;
        span++;
      }
    }
    return copied;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const mapping of this.mappings) fd.munmap(mapping);
    this.mappings.length = 0;
    this.mappingViews.length = 0;
  }
}
