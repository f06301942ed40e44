/**
 * Why udmabuf refused (or would refuse) to wrap a list of memfd ranges. Each refusal has its own
 * class and a stable `code`. `detectedBy` says whether guestfb's own checks caught it before the
 * ioctl ('precheck') or the kernel's errno was mapped to it afterwards ('kernel').
 */
import type { SystemError } from '../../native/index.js';

export type UdmabufErrorCode =
  | 'UDMABUF_UNAVAILABLE'
  | 'UDMABUF_NOT_SEALED'
  | 'UDMABUF_WRITE_SEALED'
  | 'UDMABUF_NOT_MEMFD'
  | 'UDMABUF_UNALIGNED'
  | 'UDMABUF_BAD_RANGE'
  | 'UDMABUF_LIST_LIMIT'
  | 'UDMABUF_SIZE_LIMIT'
  | 'UDMABUF_FAILED';

export type DetectedBy = 'precheck' | 'kernel';

export abstract class UdmabufError extends Error {
  abstract readonly code: UdmabufErrorCode;
  readonly detectedBy: DetectedBy;

  constructor(message: string, detectedBy: DetectedBy, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.detectedBy = detectedBy;
  }
}

/** /dev/udmabuf cannot be opened (no driver, no permission) or the exporter was disposed. */
export class UdmabufUnavailableError extends UdmabufError {
  readonly code = 'UDMABUF_UNAVAILABLE';
}

/** The memfd lacks F_SEAL_SHRINK (udmabuf pins pages that must not be truncated away). */
export class UdmabufNotSealedError extends UdmabufError {
  readonly code = 'UDMABUF_NOT_SEALED';
  constructor(
    readonly fd: number,
    readonly seals: number,
    detectedBy: DetectedBy,
  ) {
    super(`memfd ${fd} lacks F_SEAL_SHRINK (seals 0x${seals.toString(16)})`, detectedBy);
  }
}

/** The memfd carries F_SEAL_WRITE, which udmabuf refuses (the pages would be writable). */
export class UdmabufWriteSealedError extends UdmabufError {
  readonly code = 'UDMABUF_WRITE_SEALED';
  constructor(
    readonly fd: number,
    readonly seals: number,
    detectedBy: DetectedBy,
  ) {
    super(`memfd ${fd} carries F_SEAL_WRITE (seals 0x${seals.toString(16)})`, detectedBy);
  }
}

/** The fd is not a memfd (not shmem or hugetlbfs, or cannot carry seals). */
export class UdmabufNotMemfdError extends UdmabufError {
  readonly code = 'UDMABUF_NOT_MEMFD';
  constructor(
    readonly fd: number,
    detectedBy: DetectedBy,
    cause?: unknown,
  ) {
    super(`fd ${fd} is not a memfd`, detectedBy, cause);
  }
}

/** A range's offset or length is not a multiple of the page size. */
export class UdmabufUnalignedError extends UdmabufError {
  readonly code = 'UDMABUF_UNALIGNED';
  constructor(
    readonly index: number,
    readonly offset: number,
    readonly length: number,
    readonly pageSize: number,
    detectedBy: DetectedBy,
  ) {
    super(
      `range ${index} (offset ${offset}, length ${length}) is not aligned to ${pageSize}-byte pages`,
      detectedBy,
    );
  }
}

/** A range is empty, negative, not a safe integer, overflows, or ends past its memfd. */
export class UdmabufBadRangeError extends UdmabufError {
  readonly code = 'UDMABUF_BAD_RANGE';
  constructor(
    readonly index: number,
    reason: string,
    detectedBy: DetectedBy,
  ) {
    super(index >= 0 ? `range ${index}: ${reason}` : reason, detectedBy);
  }
}

/** More ranges (after coalescing) than the module's list_limit. */
export class UdmabufListLimitError extends UdmabufError {
  readonly code = 'UDMABUF_LIST_LIMIT';
  constructor(
    readonly count: number,
    readonly listLimit: number,
    detectedBy: DetectedBy,
    cause?: unknown,
  ) {
    super(`${count} ranges exceed udmabuf list_limit ${listLimit}`, detectedBy, cause);
  }
}

/** More bytes in total than the module's size_limit_mb. */
export class UdmabufSizeLimitError extends UdmabufError {
  readonly code = 'UDMABUF_SIZE_LIMIT';
  constructor(
    readonly bytes: number,
    readonly limitBytes: number,
    detectedBy: DetectedBy,
    cause?: unknown,
  ) {
    super(`${bytes} bytes exceed udmabuf size_limit of ${limitBytes} bytes`, detectedBy, cause);
  }
}

/** The kernel refused for a reason the checks could not pin down; `cause` has the errno. */
export class UdmabufFailedError extends UdmabufError {
  readonly code = 'UDMABUF_FAILED';
  constructor(
    readonly errnoCode: string,
    message: string,
    cause?: unknown,
  ) {
    super(message, 'kernel', cause);
  }
}

export function isUdmabufError(error: unknown): error is UdmabufError {
  return error instanceof UdmabufError;
}

/** Narrow type guard for the SystemError the native module throws. */
export function errnoCodeOf(error: unknown): string | null {
  const code = (error as Partial<SystemError> | null)?.code;
  return typeof code === 'string' && typeof (error as SystemError).syscall === 'string'
    ? code
    : null;
}
