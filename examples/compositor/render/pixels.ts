/**
 * Reading one pixel of a client buffer as premultiplied 0xAARRGGBB, per DRM format. Buffers are
 * little-endian byte arrays: XRGB8888 is B, G, R, X in memory.
 */
import { Fourcc } from '../dmabuf/formats.js';

/** One plane of a mapped buffer: bytes from `offset`, `stride` bytes per row. */
export interface PlaneView {
  bytes: Uint8Array;
  offset: number;
  stride: number;
}

export type PixelReader = (x: number, y: number) => number;

function clampByte(value: number): number {
  return value < 0 ? 0 : value > 255 ? 255 : (value + 0.5) | 0;
}

/** A reader for in-bounds integer coordinates (the caller clamps), or null for an unknown format. */
export function pixelReader(format: number, planes: readonly PlaneView[]): PixelReader | null {
  const [p0, p1] = planes;
  if (!p0) return null;
  const b0 = p0.bytes;
  const o0 = p0.offset;
  const s0 = p0.stride;
  switch (format) {
    case Fourcc.XRGB8888:
      return (x, y) => {
        const i = o0 + y * s0 + x * 4;
        return (0xff000000 | (b0[i + 2] << 16) | (b0[i + 1] << 8) | b0[i]) >>> 0;
      };
    case Fourcc.ARGB8888:
      return (x, y) => {
        const i = o0 + y * s0 + x * 4;
        return ((b0[i + 3] << 24) | (b0[i + 2] << 16) | (b0[i + 1] << 8) | b0[i]) >>> 0;
      };
    case Fourcc.XBGR8888:
      return (x, y) => {
        const i = o0 + y * s0 + x * 4;
        return (0xff000000 | (b0[i] << 16) | (b0[i + 1] << 8) | b0[i + 2]) >>> 0;
      };
    case Fourcc.ABGR8888:
      return (x, y) => {
        const i = o0 + y * s0 + x * 4;
        return ((b0[i + 3] << 24) | (b0[i] << 16) | (b0[i + 1] << 8) | b0[i + 2]) >>> 0;
      };
    case Fourcc.RGB565:
      return (x, y) => {
        const i = o0 + y * s0 + x * 2;
        const v = b0[i] | (b0[i + 1] << 8);
        const r = (v >> 11) & 0x1f;
        const g = (v >> 5) & 0x3f;
        const b = v & 0x1f;
        return (
          (0xff000000 |
            (((r << 3) | (r >> 2)) << 16) |
            (((g << 2) | (g >> 4)) << 8) |
            ((b << 3) | (b >> 2))) >>>
          0
        );
      };
    case Fourcc.NV12: {
      if (!p1) return null;
      const b1 = p1.bytes;
      const o1 = p1.offset;
      const s1 = p1.stride;
      // BT.601 limited range, the common default for NV12 without color metadata.
      return (x, y) => {
        const luma = b0[o0 + y * s0 + x] - 16;
        const i = o1 + (y >> 1) * s1 + (x >> 1) * 2;
        const cb = b1[i] - 128;
        const cr = b1[i + 1] - 128;
        const r = clampByte(1.164 * luma + 1.596 * cr);
        const g = clampByte(1.164 * luma - 0.392 * cb - 0.813 * cr);
        const b = clampByte(1.164 * luma + 2.017 * cb);
        return (0xff000000 | (r << 16) | (g << 8) | b) >>> 0;
      };
    }
    default:
      return null;
  }
}
