/**
 * Where a guest buffer's bytes live: an ordered list of spans of memory fds (memfds). The order
 * is the byte order of the buffer, so lists are never sorted; the same shape serves the sources
 * (what the guest attached), the present layer (what to import) and udmabuf (what to wrap).
 *
 * Fds in a `BackingRange` are BORROWED from whoever produced the list (for virtio-gpu: the guest
 * memory table); see plugin/sources/types.ts for how long they stay valid.
 */

/** A span of a memory fd holding part of a buffer, in buffer order. */
export interface BackingRange {
  /** Borrowed fd. */
  fd: number;
  offset: number;
  length: number;
}

/**
 * A guest framebuffer: its linear layout and where its bytes are. The framebuffer's bytes are the
 * concatenation of `ranges`; its first pixel is `offset` bytes into that concatenation.
 * Fds in `ranges` are borrowed: the source owns them.
 */
export interface GuestBuffer {
  width: number;
  height: number;
  stride: number;
  offset: number;
  /** DRM fourcc. */
  format: number;
  modifier: bigint;
  ranges: readonly BackingRange[];
  /**
   * True when the ranges' fds hold nothing but memory the guest shares for display (a shared
   * BAR), so showing a compositor a prefix of them exposes no other guest memory. Absent: guest
   * RAM.
   */
  displayMemoryOnly?: boolean;
}

/** Total bytes of a backing list. */
export function backingSize(ranges: readonly BackingRange[]): number {
  let total = 0;
  for (const range of ranges) total += range.length;
  return total;
}

/**
 * Merges each range into its predecessor when both are in the same fd and it starts where the
 * predecessor ends. Order is kept; a new array, the input is not changed.
 */
export function coalesceRanges(ranges: readonly BackingRange[]): BackingRange[] {
  const merged: BackingRange[] = [];
  let last: BackingRange | undefined;
  for (const range of ranges) {
    if (last !== undefined && last.fd === range.fd && last.offset + last.length === range.offset) {
      last.length += range.length;
    } else {
      last = { fd: range.fd, offset: range.offset, length: range.length };
      merged.push(last);
    }
  }
  return merged;
}
