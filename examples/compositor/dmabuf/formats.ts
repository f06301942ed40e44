/**
 * DRM fourcc formats the example compositor's software renderer can read, with the plane layout
 * each one needs. The same table drives linux-dmabuf validation (plane count, per-plane bounds)
 * and wl_shm (which uses its own codes for the two 32-bit formats, see wlShmToFourcc).
 */

import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  fourcc,
} from '../../../plugin/common/formats.js';

// The fourcc helpers are the plugin's (one vocabulary for the whole tree).
export { fourcc, fourccName } from '../../../plugin/common/formats.js';

export const Fourcc = {
  XRGB8888: fourcc('XR24'),
  ARGB8888: fourcc('AR24'),
  XBGR8888: fourcc('XB24'),
  ABGR8888: fourcc('AB24'),
  RGB565: fourcc('RG16'),
  NV12: fourcc('NV12'),
} as const;

/** DRM_FORMAT_MOD_LINEAR and DRM_FORMAT_MOD_INVALID (the "implicit modifier" token). */
export const Modifier = {
  LINEAR: DRM_FORMAT_MOD_LINEAR,
  INVALID: DRM_FORMAT_MOD_INVALID,
} as const;

export interface PlaneLayout {
  /** Bytes per pixel (per sample position of this plane). */
  bytesPerPixel: number;
  /** Horizontal and vertical subsampling of this plane relative to the base plane. */
  horizontalSubsampling: number;
  verticalSubsampling: number;
}

export interface FormatInfo {
  format: number;
  name: string;
  hasAlpha: boolean;
  planes: readonly PlaneLayout[];
}

const packed = (bytesPerPixel: number): PlaneLayout => ({
  bytesPerPixel,
  horizontalSubsampling: 1,
  verticalSubsampling: 1,
});

const formatList: FormatInfo[] = [
  { format: Fourcc.XRGB8888, name: 'XRGB8888', hasAlpha: false, planes: [packed(4)] },
  { format: Fourcc.ARGB8888, name: 'ARGB8888', hasAlpha: true, planes: [packed(4)] },
  { format: Fourcc.XBGR8888, name: 'XBGR8888', hasAlpha: false, planes: [packed(4)] },
  { format: Fourcc.ABGR8888, name: 'ABGR8888', hasAlpha: true, planes: [packed(4)] },
  { format: Fourcc.RGB565, name: 'RGB565', hasAlpha: false, planes: [packed(2)] },
  {
    format: Fourcc.NV12,
    name: 'NV12',
    hasAlpha: false,
    // Full-resolution Y, then interleaved CbCr at half resolution in both directions.
    planes: [packed(1), { bytesPerPixel: 2, horizontalSubsampling: 2, verticalSubsampling: 2 }],
  },
];

export const formatInfo: ReadonlyMap<number, FormatInfo> = new Map(
  formatList.map((info) => [info.format, info]),
);

/** Width or height of a plane, rounding up like the kernel's drm_format_info_plane_width. */
export function planeExtent(baseExtent: number, subsampling: number): number {
  return Math.ceil(baseExtent / subsampling);
}

/** wl_shm.format: ARGB8888 and XRGB8888 have codes 0 and 1; every other value is a fourcc. */
export function wlShmToFourcc(shmFormat: number): number {
  if (shmFormat === 0) return Fourcc.ARGB8888;
  if (shmFormat === 1) return Fourcc.XRGB8888;
  return shmFormat >>> 0;
}

export function fourccToWlShm(format: number): number {
  if (format === Fourcc.ARGB8888) return 0;
  if (format === Fourcc.XRGB8888) return 1;
  return format;
}

/** Format + modifier pairs, as advertised to clients. Order is stable (it is the table order). */
export class FormatModifierSet {
  private readonly pairs: { format: number; modifier: bigint }[] = [];
  private readonly byFormat = new Map<number, Set<bigint>>();

  add(format: number, modifier: bigint): this {
    let modifiers = this.byFormat.get(format);
    if (!modifiers) {
      modifiers = new Set();
      this.byFormat.set(format, modifiers);
    }
    if (!modifiers.has(modifier)) {
      modifiers.add(modifier);
      this.pairs.push({ format, modifier });
    }
    return this;
  }

  has(format: number, modifier: bigint): boolean {
    return this.byFormat.get(format)?.has(modifier) ?? false;
  }

  hasFormat(format: number): boolean {
    return this.byFormat.has(format);
  }

  formats(): number[] {
    return [...this.byFormat.keys()];
  }

  modifiersOf(format: number): bigint[] {
    return [...(this.byFormat.get(format) ?? [])];
  }

  entries(): readonly { format: number; modifier: bigint }[] {
    return this.pairs;
  }
}

/** What this compositor advertises over linux-dmabuf: every renderable format, LINEAR and the
 * implicit modifier (which for a CPU reader means linear too). */
export function defaultDmabufFormats(): FormatModifierSet {
  const set = new FormatModifierSet();
  for (const info of formatList) {
    set.add(info.format, Modifier.LINEAR);
    set.add(info.format, Modifier.INVALID);
  }
  return set;
}
