/**
 * The fallback decision: which path a guest buffer takes to the compositor, and why.
 *
 *   dmabuf      the backing pages wrapped by udmabuf, imported by the compositor: no copy.
 *   shm-direct  the backing is one contiguous span of one memfd: wl_shm pool on that memfd
 *               itself, no copy (the compositor maps the fd from 0 to the framebuffer's end,
 *               so this is taken only where that shows nothing but display memory).
 *   shm-copy    anything else: a private shm buffer; each flush copies only the damaged rects.
 */
import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  bytesPerPixel,
  dmabufFormatRefusal,
  drmToShmFormat,
  fourccName,
  modifierName,
  type FormatSet,
} from '../common/formats.js';
import { coalesceRanges, type BackingRange, type GuestBuffer } from '../common/backing.js';

export {
  backingSize,
  coalesceRanges,
  type BackingRange,
  type GuestBuffer,
} from '../common/backing.js';

/** Largest width/height accepted (the protocol carries int32; compositors cap far lower). */
export const MAX_DIMENSION = 16384;
const INT32_MAX = 0x7fffffff;

/** Why the buffer's geometry is unusable, or null. All arithmetic stays below 2^53. */
export function validateGuestBuffer(buffer: GuestBuffer): string | null {
  const { width, height, stride, offset } = buffer;
  if (!Number.isInteger(width) || width < 1 || width > MAX_DIMENSION) return `bad width ${width}`;
  if (!Number.isInteger(height) || height < 1 || height > MAX_DIMENSION) {
    return `bad height ${height}`;
  }
  if (!Number.isInteger(stride) || stride < 1 || stride > INT32_MAX) return `bad stride ${stride}`;
  if (!Number.isSafeInteger(offset) || offset < 0) return `bad offset ${offset}`;
  const bpp = bytesPerPixel(buffer.format);
  if (bpp !== null && stride < width * bpp) {
    return `stride ${stride} is below ${width} pixels of ${fourccName(buffer.format)}`;
  }
  if (buffer.ranges.length === 0) return 'the buffer has no backing';
  let total = 0;
  for (const range of buffer.ranges) {
    if (!Number.isInteger(range.fd) || range.fd < 0) return `bad fd ${range.fd}`;
    if (!Number.isSafeInteger(range.offset) || range.offset < 0) {
      return `bad range offset ${range.offset}`;
    }
    if (!Number.isSafeInteger(range.length) || range.length <= 0) {
      return `bad range length ${range.length}`;
    }
    total += range.length;
    if (!Number.isSafeInteger(total)) return 'backing size overflows';
  }
  // The last row needs only its pixels, not a whole stride.
  const lastRowBytes = bpp === null ? stride : width * bpp;
  const needed = offset + stride * (height - 1) + lastRowBytes;
  if (needed > total) return `the buffer needs ${needed} bytes, its backing has ${total}`;
  return null;
}

/**
 * Why some range ends past the end of its fd, or null. Mapping such a range would succeed and
 * then fault (SIGBUS) on access, in the compositor or, for the copy path, in this process.
 * `sizeOf` returns an fd's size (lseek SEEK_END); it is asked once per distinct fd.
 */
export function backingBeyondFds(
  ranges: readonly BackingRange[],
  sizeOf: (fd: number) => number,
): string | null {
  const sizes = new Map<number, number>();
  for (const range of ranges) {
    let size = sizes.get(range.fd);
    if (size === undefined) {
      size = sizeOf(range.fd);
      sizes.set(range.fd, size);
    }
    if (range.offset + range.length > size) {
      return `range ${range.offset}+${range.length} ends past the end of fd ${range.fd} (${size} bytes)`;
    }
  }
  return null;
}

/**
 * The modifier to import a buffer with: its own when advertised; a LINEAR buffer may also go as
 * INVALID (implicit) when that is all the compositor lists for the format, since guest memory is
 * linear. Null when neither works.
 */
export function chooseModifier(
  advertised: FormatSet,
  format: number,
  modifier: bigint,
): bigint | null {
  if (advertised.has(format, modifier)) return modifier;
  if (modifier === DRM_FORMAT_MOD_LINEAR && advertised.has(format, DRM_FORMAT_MOD_INVALID)) {
    return DRM_FORMAT_MOD_INVALID;
  }
  return null;
}

export type DmabufPlan = { path: 'dmabuf'; modifier: bigint } | { path: 'refused'; reason: string };

/**
 * First stage: can this buffer go as a dma-buf? `udmabufRefusal` is why udmabuf cannot be used
 * on this host (null when the device opened). The exporter may still refuse the specific range
 * list later (limits); that refusal then goes to planShm.
 */
export function planDmabuf(
  buffer: GuestBuffer,
  advertised: FormatSet | null,
  udmabufRefusal: string | null,
): DmabufPlan {
  if (udmabufRefusal !== null) return { path: 'refused', reason: udmabufRefusal };
  const formatRefusal = dmabufFormatRefusal(advertised, buffer.format, buffer.modifier);
  if (advertised !== null) {
    const modifier = chooseModifier(advertised, buffer.format, buffer.modifier);
    if (modifier !== null) return { path: 'dmabuf', modifier };
  }
  return { path: 'refused', reason: formatRefusal ?? 'format refused' };
}

export type ShmPlan =
  | {
      path: 'shm-direct';
      reason: string;
      /** Borrowed from the source: the pool is created on it. */
      memfd: number;
      poolSize: number;
      bufferOffset: number;
      shmFormat: number;
    }
  | { path: 'shm-copy'; reason: string; shmFormat: number; bytesPerPixel: number }
  | { path: 'unpresentable'; reason: string };

export interface ShmPolicy {
  /**
   * Allow a wl_shm pool on guest RAM although it shows the compositor (read-write) every byte of
   * the memfd before the framebuffer. Default false: such buffers are copied instead. Buffers
   * in display-only memory (a shared BAR) or starting at byte 0 of their fd need no opt-in.
   */
  shmOnGuestRam?: boolean;
}

/**
 * Second stage, after the dma-buf path was refused for `reason`: a wl_shm path if one exists.
 * `shmFormats` are the DRM fourccs the compositor's wl_shm advertised.
 *
 * A wl_shm pool always starts at byte 0 of its fd, and the compositor maps it read-write. The
 * pool is cut where the framebuffer's last row ends, so nothing after the framebuffer is visible;
 * what lies before it is visible too, which is harmless only when the fd holds nothing but
 * display memory (`displayMemoryOnly`) or the framebuffer starts at byte 0. On guest RAM the
 * zero-copy pool is therefore opt-in (`shmOnGuestRam`); udmabuf is what exposes exactly the
 * buffer's pages without a copy.
 */
export function planShm(
  buffer: GuestBuffer,
  reason: string,
  shmFormats: ReadonlySet<number>,
  policy: ShmPolicy = {},
): ShmPlan {
  const name = fourccName(buffer.format);
  if (buffer.modifier !== DRM_FORMAT_MOD_LINEAR && buffer.modifier !== DRM_FORMAT_MOD_INVALID) {
    return {
      path: 'unpresentable',
      reason: `${reason}; and wl_shm cannot show modifier ${modifierName(buffer.modifier)}`,
    };
  }
  const bpp = bytesPerPixel(buffer.format);
  if (bpp === null || !shmFormats.has(buffer.format)) {
    return { path: 'unpresentable', reason: `${reason}; and wl_shm does not offer ${name}` };
  }
  const shmFormat = drmToShmFormat(buffer.format);
  const spans = coalesceRanges(buffer.ranges);
  let why = `${spans.length} backing spans`;
  if (spans.length === 1) {
    const span = spans[0];
    const bufferOffset = span.offset + buffer.offset;
    // wl_shm checks offset + stride * height against the pool in int32 arithmetic; the pool
    // ends right there, so no byte after the framebuffer's last row is in it.
    const poolSize = bufferOffset + buffer.stride * buffer.height;
    if (poolSize > INT32_MAX || poolSize > span.offset + span.length) {
      why = 'contiguous backing that wl_shm cannot address (past 2 GiB or short last row)';
    } else if (bufferOffset > 0 && !buffer.displayMemoryOnly && !policy.shmOnGuestRam) {
      why =
        `contiguous backing at byte ${bufferOffset} of guest RAM (a wl_shm pool there would ` +
        `show the compositor the guest RAM before the framebuffer; shmOnGuestRam allows it)`;
    } else {
      const where = buffer.displayMemoryOnly ? 'display memory' : 'the guest memfd';
      return {
        path: 'shm-direct',
        reason: `${reason}; contiguous backing: wl_shm on ${where}, no copy`,
        memfd: span.fd,
        poolSize,
        bufferOffset,
        shmFormat,
      };
    }
  }
  return {
    path: 'shm-copy',
    reason: `${reason}; ${why}: copying damaged rects into wl_shm`,
    shmFormat,
    bytesPerPixel: bpp,
  };
}
