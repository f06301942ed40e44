/**
 * DRM formats and modifiers: what the compositor advertised (linux-dmabuf v3 events or the v4
 * feedback format table) and what wl_shm accepts, and the checks a buffer must pass before it
 * is offered to the compositor.
 */

/** A DRM fourcc code from its four characters, e.g. fourcc('XR24'). */
export function fourcc(code: string): number {
  if (code.length !== 4) throw new RangeError(`a fourcc has four characters, got "${code}"`);
  let value = 0;
  for (let i = 3; i >= 0; i--) {
    const c = code.charCodeAt(i);
    if (c > 0x7f) throw new RangeError(`fourcc "${code}" is not ASCII`);
    value = value * 256 + c;
  }
  return value >>> 0;
}

/** The four characters of a fourcc code (non-printable bytes as '?'). */
export function fourccName(format: number): string {
  let name = '';
  for (let i = 0; i < 4; i++) {
    const c = (format >>> (8 * i)) & 0xff;
    name += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return name;
}

export const DrmFormat = {
  XRGB8888: fourcc('XR24'),
  ARGB8888: fourcc('AR24'),
  XBGR8888: fourcc('XB24'),
  ABGR8888: fourcc('AB24'),
  RGBX8888: fourcc('RX24'),
  RGBA8888: fourcc('RA24'),
  BGRX8888: fourcc('BX24'),
  BGRA8888: fourcc('BA24'),
  RGB565: fourcc('RG16'),
} as const;

export const DRM_FORMAT_MOD_LINEAR = 0n;
/** "Implicit modifier": the layout is agreed out of band (for guest memory: linear). */
export const DRM_FORMAT_MOD_INVALID = 0x00ffffffffffffffn;

/** wl_shm's two legacy codes; every other wl_shm format code equals its DRM fourcc. */
export const WL_SHM_FORMAT_ARGB8888 = 0;
export const WL_SHM_FORMAT_XRGB8888 = 1;

export function drmToShmFormat(format: number): number {
  if (format === DrmFormat.ARGB8888) return WL_SHM_FORMAT_ARGB8888;
  if (format === DrmFormat.XRGB8888) return WL_SHM_FORMAT_XRGB8888;
  return format;
}

export function shmToDrmFormat(format: number): number {
  if (format === WL_SHM_FORMAT_ARGB8888) return DrmFormat.ARGB8888;
  if (format === WL_SHM_FORMAT_XRGB8888) return DrmFormat.XRGB8888;
  return format >>> 0;
}

/** Bytes per pixel of the single-plane formats guestfb can copy, or null for others. */
export function bytesPerPixel(format: number): number | null {
  switch (format) {
    case DrmFormat.XRGB8888:
    case DrmFormat.ARGB8888:
    case DrmFormat.XBGR8888:
    case DrmFormat.ABGR8888:
    case DrmFormat.RGBX8888:
    case DrmFormat.RGBA8888:
    case DrmFormat.BGRX8888:
    case DrmFormat.BGRA8888:
      return 4;
    case DrmFormat.RGB565:
      return 2;
    default:
      return null;
  }
}

export function modifierName(modifier: bigint): string {
  if (modifier === DRM_FORMAT_MOD_LINEAR) return 'LINEAR';
  if (modifier === DRM_FORMAT_MOD_INVALID) return 'INVALID';
  return `0x${modifier.toString(16).padStart(16, '0')}`;
}

/** Joins the two 32-bit halves a linux-dmabuf event carries. */
export function joinModifier(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Splits a modifier into the halves zwp_linux_buffer_params_v1.add takes. */
export function modifierHi(modifier: bigint): number {
  return Number((modifier >> 32n) & 0xffffffffn);
}

export function modifierLo(modifier: bigint): number {
  return Number(modifier & 0xffffffffn);
}

/** A set of (format, modifier) pairs. Lookups allocate nothing. */
export class FormatSet {
  private readonly byFormat = new Map<number, bigint[]>();

  add(format: number, modifier: bigint): void {
    const key = format >>> 0;
    let modifiers = this.byFormat.get(key);
    if (!modifiers) {
      modifiers = [];
      this.byFormat.set(key, modifiers);
    }
    if (!modifiers.includes(modifier)) modifiers.push(modifier);
  }

  has(format: number, modifier: bigint): boolean {
    const modifiers = this.byFormat.get(format >>> 0);
    if (!modifiers) return false;
    for (let i = 0; i < modifiers.length; i++) if (modifiers[i] === modifier) return true;
    return false;
  }

  hasFormat(format: number): boolean {
    return this.byFormat.has(format >>> 0);
  }

  modifiers(format: number): readonly bigint[] {
    return this.byFormat.get(format >>> 0) ?? [];
  }

  formats(): number[] {
    return [...this.byFormat.keys()];
  }

  get size(): number {
    let total = 0;
    for (const modifiers of this.byFormat.values()) total += modifiers.length;
    return total;
  }

  clear(): void {
    this.byFormat.clear();
  }

  /** "XR24:LINEAR,INVALID AR24:LINEAR" */
  describe(): string {
    return [...this.byFormat]
      .map(
        ([format, modifiers]) => `${fourccName(format)}:${modifiers.map(modifierName).join(',')}`,
      )
      .join(' ');
  }
}

/** One entry of the linux-dmabuf v4 format table. */
export interface FormatTableEntry {
  format: number;
  modifier: bigint;
}

export const FORMAT_TABLE_ENTRY_SIZE = 16;

/**
 * Decodes a v4 feedback format table: 16-byte entries of u32 format, 4 bytes padding, u64
 * modifier, in host byte order. A size that is not a multiple of 16 is a compositor bug: the
 * trailing partial entry is rejected.
 */
export function parseFormatTable(table: Uint8Array): FormatTableEntry[] {
  if (table.byteLength % FORMAT_TABLE_ENTRY_SIZE !== 0) {
    throw new RangeError(
      `format table size ${table.byteLength} is not a multiple of ${FORMAT_TABLE_ENTRY_SIZE}`,
    );
  }
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const entries: FormatTableEntry[] = [];
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  for (let offset = 0; offset < table.byteLength; offset += FORMAT_TABLE_ENTRY_SIZE) {
    entries.push({
      format: view.getUint32(offset, littleEndian),
      modifier: view.getBigUint64(offset + 8, littleEndian),
    });
  }
  return entries;
}

/**
 * Adds the entries a tranche's `formats` array selects (u16 indices into the table) to `into`.
 * Returns the number of indices that pointed outside the table (ignored).
 */
export function addTrancheFormats(
  indices: Uint8Array,
  table: readonly FormatTableEntry[],
  into: FormatSet,
): number {
  let invalid = 0;
  if (indices.byteLength % 2 !== 0) invalid++;
  const view = new DataView(indices.buffer, indices.byteOffset, indices.byteLength);
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  for (let offset = 0; offset + 2 <= indices.byteLength; offset += 2) {
    const index = view.getUint16(offset, littleEndian);
    const entry = table[index];
    if (entry === undefined) {
      invalid++;
      continue;
    }
    into.add(entry.format, entry.modifier);
  }
  return invalid;
}

/** Why a buffer cannot go to the compositor as a dma-buf, or null when it can. */
export function dmabufFormatRefusal(
  advertised: FormatSet | null,
  format: number,
  modifier: bigint,
): string | null {
  if (advertised === null) return 'the compositor offers no zwp_linux_dmabuf_v1';
  if (advertised.has(format, modifier)) return null;
  if (!advertised.hasFormat(format)) {
    return `the compositor does not advertise format ${fourccName(format)} for dma-bufs`;
  }
  return (
    `the compositor does not advertise ${fourccName(format)} with modifier ` +
    `${modifierName(modifier)} (it offers ${advertised.modifiers(format).map(modifierName).join(', ')})`
  );
}
