/**
 * Turning a guest buffer's backing — an ordered list of (memfd, offset, length) spans — into a
 * list udmabuf accepts: shape checks (safe integers, page alignment, no overflow), coalescing of
 * neighbours, the module's limits, the memfd's size and seals. Every refusal is a typed error
 * raised before the ioctl; `explainUdmabufFailure` maps the kernel's errno back onto the same
 * errors when a refusal slips through (a limit changed, a seal raced, checks were skipped).
 *
 * The order of the list is the byte order of the dma-buf, so ranges are never sorted: only
 * consecutive ranges that continue each other in the same memfd are merged. Scattered guest RAM
 * usually consists of runs of contiguous pages, which collapse into few ranges this way.
 */
import {
  UdmabufBadRangeError,
  UdmabufError,
  UdmabufFailedError,
  UdmabufListLimitError,
  UdmabufNotMemfdError,
  UdmabufNotSealedError,
  UdmabufSizeLimitError,
  UdmabufUnalignedError,
  UdmabufUnavailableError,
  UdmabufWriteSealedError,
  errnoCodeOf,
  type DetectedBy,
} from './errors.js';
import type { UdmabufLimits } from './limits.js';
import { coalesceRanges, type BackingRange } from '../common/backing.js';

export { coalesceRanges } from '../common/backing.js';

/** A span of a memfd: the plugin's BackingRange. Fds are borrowed. */
export type MemfdRange = BackingRange;

/** F_SEAL_* bits udmabuf cares about. */
const F_SEAL_SHRINK = 0x2;
const F_SEAL_WRITE = 0x8;

/** What planning needs to know about a memfd (syscalls in production, fakes in unit tests). */
export interface MemfdQueries {
  /** The memfd's size in bytes. */
  fileSize(fd: number): number;
  /** Its F_GET_SEALS bits; throws a SystemError (EINVAL) for an fd that cannot carry seals. */
  seals(fd: number): number;
}

export type PlanLimits = Pick<UdmabufLimits, 'listLimit' | 'sizeLimitBytes'>;

export interface PlanOptions {
  pageSize: number;
  limits: PlanLimits;
  /** Merge neighbouring ranges (default true). Off only to show what the kernel does without. */
  coalesce?: boolean;
}

export interface UdmabufPlan {
  /** The ranges to hand to the kernel, in dma-buf byte order. */
  ranges: MemfdRange[];
  /** The dma-buf's size: the sum of the lengths. */
  totalBytes: number;
  /** How many ranges came in before coalescing. */
  inputCount: number;
}

export function assertPageSize(pageSize: number): void {
  if (!Number.isSafeInteger(pageSize) || pageSize < 4096 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`page size must be a power of two of at least 4096, got ${pageSize}`);
  }
}

/**
 * Checks each range's numbers (fd, safe integers, positive length, end below 2^53, page
 * alignment) and returns the total length. Throws the first refusal found.
 */
export function checkRangeShapes(ranges: readonly MemfdRange[], pageSize: number): number {
  assertPageSize(pageSize);
  if (ranges.length === 0) throw new UdmabufBadRangeError(-1, 'no ranges', 'precheck');
  let total = 0;
  ranges.forEach((range, index) => {
    const { fd, offset, length } = range;
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new UdmabufBadRangeError(index, `bad fd ${fd}`, 'precheck');
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new UdmabufBadRangeError(index, `bad offset ${offset}`, 'precheck');
    }
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw new UdmabufBadRangeError(index, `bad length ${length}`, 'precheck');
    }
    // Both are below 2^53, so the sum is exact up to 2^54 and the comparison is reliable.
    if (offset + length > Number.MAX_SAFE_INTEGER) {
      throw new UdmabufBadRangeError(
        index,
        `offset ${offset} + length ${length} overflows`,
        'precheck',
      );
    }
    // Powers of two below 2^53: the remainder is exact.
    if (offset % pageSize !== 0 || length % pageSize !== 0) {
      throw new UdmabufUnalignedError(index, offset, length, pageSize, 'precheck');
    }
    total += length;
    if (total > Number.MAX_SAFE_INTEGER) {
      throw new UdmabufBadRangeError(index, 'total length overflows', 'precheck');
    }
  });
  return total;
}

/** The distinct fds of a list, in first-seen order. */
function distinctFds(ranges: readonly MemfdRange[]): number[] {
  return [...new Set(ranges.map((range) => range.fd))];
}

/** Seal refusal for one fd, or null when udmabuf will accept its seals. */
function sealRefusal(
  fd: number,
  queries: MemfdQueries,
  detectedBy: DetectedBy,
): UdmabufError | null {
  let seals: number;
  try {
    seals = queries.seals(fd);
  } catch (error) {
    if (errnoCodeOf(error) === 'EINVAL') return new UdmabufNotMemfdError(fd, detectedBy, error);
    throw error;
  }
  if ((seals & F_SEAL_SHRINK) === 0) return new UdmabufNotSealedError(fd, seals, detectedBy);
  if ((seals & F_SEAL_WRITE) !== 0) return new UdmabufWriteSealedError(fd, seals, detectedBy);
  return null;
}

/** The first range that ends past its memfd's size, as an error, or null. */
function boundsRefusal(
  ranges: readonly MemfdRange[],
  queries: MemfdQueries,
  detectedBy: DetectedBy,
): UdmabufError | null {
  const sizes = new Map<number, number>();
  for (let index = 0; index < ranges.length; index++) {
    const { fd, offset, length } = ranges[index]!;
    let size = sizes.get(fd);
    if (size === undefined) {
      size = queries.fileSize(fd);
      sizes.set(fd, size);
    }
    if (offset + length > size) {
      const reason = `ends at ${offset + length}, past the end of fd ${fd} (${size} bytes)`;
      return new UdmabufBadRangeError(index, reason, detectedBy);
    }
  }
  return null;
}

/**
 * Validates and coalesces a backing list for UDMABUF_CREATE(_LIST). Throws a UdmabufError for
 * every refusal the kernel would make, in this order: shapes and alignment, size_limit,
 * list_limit (after coalescing), bounds against each memfd's size, seals.
 */
export function planUdmabuf(
  ranges: readonly MemfdRange[],
  options: PlanOptions,
  queries: MemfdQueries,
): UdmabufPlan {
  const totalBytes = checkRangeShapes(ranges, options.pageSize);
  const { listLimit, sizeLimitBytes } = options.limits;
  if (totalBytes > sizeLimitBytes) {
    throw new UdmabufSizeLimitError(totalBytes, sizeLimitBytes, 'precheck');
  }
  const planned =
    options.coalesce === false ? ranges.map((range) => ({ ...range })) : coalesceRanges(ranges);
  if (planned.length > listLimit) {
    throw new UdmabufListLimitError(planned.length, listLimit, 'precheck');
  }
  const outOfBounds = boundsRefusal(planned, queries, 'precheck');
  if (outOfBounds) throw outOfBounds;
  for (const fd of distinctFds(planned)) {
    const refusal = sealRefusal(fd, queries, 'precheck');
    if (refusal) throw refusal;
  }
  return { ranges: planned, totalBytes, inputCount: ranges.length };
}

export interface FailureContext {
  /** The list that was handed to the kernel. */
  ranges: readonly MemfdRange[];
  limits: PlanLimits;
  pageSize: number;
  queries: MemfdQueries;
}

/**
 * Maps a failed UDMABUF_CREATE(_LIST) onto a typed error. udmabuf answers almost every refusal
 * with EINVAL (EBADFD for a file that is not a memfd), so the cause is found by checking the
 * list again in the kernel's own order: count, alignment and size, then each memfd.
 */
export function explainUdmabufFailure(error: unknown, context: FailureContext): UdmabufError {
  const code = errnoCodeOf(error);
  const { ranges, limits, pageSize, queries } = context;
  if (code === 'ENOTTY' || code === 'ENODEV') {
    return new UdmabufUnavailableError(
      `udmabuf does not support this request (${code})`,
      'kernel',
      error,
    );
  }
  const safely = (check: () => UdmabufError | null): UdmabufError | null => {
    try {
      return check();
    } catch {
      return null; // a failing query (fd gone) cannot explain anything
    }
  };
  if (code === 'EBADFD' || code === 'EBADF') {
    // The first fd whose seals cannot be read is the one the kernel could not use.
    for (const fd of distinctFds(ranges)) {
      try {
        queries.seals(fd);
      } catch (queryError) {
        return new UdmabufNotMemfdError(fd, 'kernel', queryError);
      }
    }
    return new UdmabufNotMemfdError(ranges[0]?.fd ?? -1, 'kernel', error);
  }
  if (code === 'EINVAL') {
    if (ranges.length > limits.listLimit) {
      return new UdmabufListLimitError(ranges.length, limits.listLimit, 'kernel', error);
    }
    let total = 0;
    for (let index = 0; index < ranges.length; index++) {
      const { offset, length } = ranges[index]!;
      if (offset % pageSize !== 0 || length % pageSize !== 0) {
        return new UdmabufUnalignedError(index, offset, length, pageSize, 'kernel');
      }
      total += length;
    }
    if (total > limits.sizeLimitBytes) {
      return new UdmabufSizeLimitError(total, limits.sizeLimitBytes, 'kernel', error);
    }
    if (total === 0) return new UdmabufBadRangeError(-1, 'empty list', 'kernel');
    for (const fd of distinctFds(ranges)) {
      const refusal = safely(() => sealRefusal(fd, queries, 'kernel'));
      if (refusal) return refusal;
    }
    const outOfBounds = safely(() => boundsRefusal(ranges, queries, 'kernel'));
    if (outOfBounds) return outOfBounds;
  }
  const message = error instanceof Error ? error.message : String(error);
  return new UdmabufFailedError(code ?? 'UNKNOWN', `udmabuf refused the list: ${message}`, error);
}
