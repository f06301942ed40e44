/**
 * The shm-copy fallback's copier: copies damaged rectangles of a guest framebuffer, whose bytes
 * are scattered over memfd spans, into a tightly packed shm buffer. Spans are mapped once when
 * the copier is made; a copy allocates nothing (Buffer.copy takes offsets, not views).
 */
import { fd } from '../../native/fd.js';
import { coalesceRanges, type GuestBuffer } from './plan.js';

const PAGE_SIZE = 4096;

export class DamageCopier {
  /** One Buffer per mapped span (a view into the span's mapping, starting at its first byte). */
  private readonly spanViews: Buffer[] = [];
  private readonly mappings: ArrayBuffer[] = [];
  /** Framebuffer-relative byte where each span starts; one extra entry holds the total. */
  private readonly spanStarts: Float64Array;
  readonly targetStride: number;
  private closed = false;

  /** Borrows the buffer's memfds (mappings outlive them, but the source keeps them anyway). */
  constructor(
    private readonly buffer: GuestBuffer,
    readonly bytesPerPixel: number,
  ) {
    const spans = coalesceRanges(buffer.ranges);
    this.spanStarts = new Float64Array(spans.length + 1);
    this.targetStride = buffer.width * bytesPerPixel;
    let start = 0;
    try {
      for (let i = 0; i < spans.length; i++) {
        const span = spans[i];
        const alignedOffset = span.offset - (span.offset % PAGE_SIZE);
        const lead = span.offset - alignedOffset;
        const mapping = fd.mmap(span.fd, alignedOffset, lead + span.length, false);
        this.mappings.push(mapping);
        this.spanViews.push(Buffer.from(mapping, lead, span.length));
        this.spanStarts[i] = start;
        start += span.length;
      }
    } catch (error) {
      this.close();
      throw error;
    }
    this.spanStarts[spans.length] = start;
  }

  /** Size of the packed target buffer in bytes. */
  get targetSize(): number {
    return this.targetStride * this.buffer.height;
  }

  /** Index of the span holding framebuffer byte `position` (binary search). */
  private spanAt(position: number): number {
    let low = 0;
    let high = this.spanViews.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.spanStarts[middle] <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /**
   * Copies the rectangle (already clipped to the buffer) into `target` (packed, targetStride).
   * Returns the number of bytes copied.
   */
  copyRect(target: Buffer, x: number, y: number, width: number, height: number): number {
    if (this.closed) throw new Error('copier is closed');
    const bpp = this.bytesPerPixel;
    const rowBytes = width * bpp;
    let copied = 0;
    for (let row = y; row < y + height; row++) {
      let source = this.buffer.offset + row * this.buffer.stride + x * bpp;
      let destination = row * this.targetStride + x * bpp;
      let remaining = rowBytes;
      let span = this.spanAt(source);
      while (remaining > 0) {
        const spanStart = this.spanStarts[span];
        const within = source - spanStart;
        const available = this.spanStarts[span + 1] - source;
        const chunk = remaining < available ? remaining : available;
        this.spanViews[span].copy(target, destination, within, within + chunk);
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
    this.spanViews.length = 0;
  }
}
