/**
 * The shared BAR header (versions 1 and 2): what a guest-side writer puts at the start of the
 * ivshmem BAR so guestfb knows where its framebuffer is and when a frame is done. Version 2 adds
 * host-requested sizes: guestfb writes a size into its host area (`encodeHostRequest`), a
 * version-2 writer re-lays out its framebuffer at that size and acknowledges the request in
 * `request_ack`; a version-1 writer ignores the host area and keeps working as before. The layout is
 * specified in README.md ("Shared BAR header (ivshmem)"); all fields are little-endian.
 *
 * Everything here is pure: `parseBarHeader` reads a snapshot of the header page and either
 * returns a layout that is safe to hand to udmabuf and the compositor, or the list of problems.
 * It never throws on any input (a fuzz test holds it to that) and all 64-bit arithmetic is
 * BigInt, so no guest value can overflow a check.
 */
import { bytesPerPixel, DRM_FORMAT_MOD_LINEAR, fourccName } from '../../common/formats.js';
import type { Rect } from '../types.js';

/** "GFBR" as a little-endian u32. */
export const BAR_MAGIC = 0x52424647;
/** The newest header version guestfb reads (it reads every version from 1 up to it). */
export const BAR_VERSION = 2;
/** The first version whose writers follow host size requests. */
export const BAR_VERSION_REQUESTS = 2;
/** Bytes of the header the guest fills (versions 1 and 2); a later version may declare more. */
export const BAR_HEADER_SIZE_V1 = 384;
/** The header page: the framebuffer (and cursor image) must lie past it. */
export const BAR_HEADER_PAGE = 4096;
/** udmabuf wants page-aligned offsets; guestfb requires 4096 whatever the host's page size. */
export const BAR_ALIGNMENT = 4096;
export const MAX_DAMAGE_RECTS = 16;
export const MAX_DIMENSION = 16384;
export const MAX_CURSOR_SIZE = 256;
/** Written by guestfb (never by the guest) at HOST_AREA_OFFSET: "GFBH". */
export const HOST_MAGIC = 0x48424647;
export const HOST_AREA_OFFSET = 0xf00;
/** host_peer value meaning "no doorbell: poll" (ivshmem-plain). */
export const NO_HOST_PEER = 0xffffffff;

/** Byte offsets of the v1 fields. */
export const Field = {
  magic: 0, // u32
  version: 4, // u16
  headerSize: 6, // u16
  fourcc: 8, // u32
  flags: 12, // u32, reserved: 0
  modifier: 16, // u64
  width: 24, // u32
  height: 28, // u32
  stride: 32, // u32
  offset: 40, // u64, framebuffer offset in the BAR
  sequence: 48, // u32, odd while the guest writes, even when a frame is complete
  damageCount: 52, // u32, 0 = whole frame
  damage: 56, // MAX_DAMAGE_RECTS x {x, y, width, height: u32}
  cursorX: 312, // i32, hotspot position on the framebuffer
  cursorY: 316, // i32
  cursorVisible: 320, // u32, 0 or 1
  cursorHotX: 324, // u32
  cursorHotY: 328, // u32
  cursorWidth: 332, // u32
  cursorHeight: 336, // u32
  cursorSerial: 340, // u32, changes when the cursor image changes
  cursorOffset: 344, // u64, ARGB8888 image, stride width*4, in the BAR
  requestAck: 352, // u32, v2: the last request_sequence the writer handled (taken or declined)
  // 356..384 reserved
  hostMagic: HOST_AREA_OFFSET, // u32, written by guestfb
  hostPeer: HOST_AREA_OFFSET + 4, // u32, guestfb's ivshmem peer id (doorbell target)
  requestSequence: HOST_AREA_OFFSET + 8, // u32, odd while guestfb writes a request; 0: none
  requestWidth: HOST_AREA_OFFSET + 12, // u32
  requestHeight: HOST_AREA_OFFSET + 16, // u32
} as const;

/** The size guestfb asks the writer for (the host area's request fields). */
export interface HostRequest {
  /** Even and nonzero for a complete request; it grows by 2 with each new request. */
  sequence: number;
  width: number;
  height: number;
}

/**
 * Bytes guestfb writes at Field.requestSequence for a request, in three writes so a reader never
 * sees a half-written size as complete: `odd` (sequence - 1: writing), then `body` (width,
 * height), then `done` (sequence). `sequence` must be even and nonzero.
 */
export function encodeHostRequest(request: HostRequest): {
  odd: Uint8Array;
  body: Uint8Array;
  done: Uint8Array;
} {
  if (!Number.isInteger(request.sequence) || request.sequence < 2 || request.sequence % 2 !== 0) {
    throw new RangeError(`request sequence ${request.sequence} is not even and nonzero`);
  }
  const u32 = (value: number) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    return bytes;
  };
  const body = new Uint8Array(8);
  const view = new DataView(body.buffer);
  view.setUint32(0, request.width >>> 0, true);
  view.setUint32(4, request.height >>> 0, true);
  return { odd: u32(request.sequence - 1), body, done: u32(request.sequence) };
}

/** The request in a header page (what a writer reads), or null when none is complete. */
export function readHostRequest(view: DataView): HostRequest | null {
  if (view.byteLength < Field.requestHeight + 4) return null;
  const sequence = view.getUint32(Field.requestSequence, true);
  if (sequence === 0 || sequence % 2 !== 0) return null;
  return {
    sequence,
    width: view.getUint32(Field.requestWidth, true),
    height: view.getUint32(Field.requestHeight, true),
  };
}

/** The part of the header that decides the buffer: a change replaces the wl_buffer. */
export interface BarLayout {
  fourcc: number;
  modifier: bigint;
  width: number;
  height: number;
  stride: number;
  /** Byte offset of the first pixel in the BAR (page aligned). */
  offset: number;
  /** Bytes the framebuffer spans from `offset`, rounded up to whole pages (≤ BAR size). */
  span: number;
}

export interface BarCursor {
  visible: boolean;
  x: number;
  y: number;
  hotX: number;
  hotY: number;
  width: number;
  height: number;
  /** Byte offset of the ARGB8888 image in the BAR. */
  imageOffset: number;
  serial: number;
}

export interface BarHeader {
  version: number;
  headerSize: number;
  /** Version 2 and later: the last host request the writer handled; null for version 1. */
  requestAck: number | null;
  sequence: number;
  layout: BarLayout;
  /** Clipped to the framebuffer; empty rects dropped. Empty array: the whole frame. */
  damage: Rect[];
  /** null when hidden or when its fields are invalid (see `cursorProblem`). */
  cursor: BarCursor | null;
  /** Why the cursor was ignored although the frame is fine. */
  cursorProblem: string | null;
}

export type HeaderResult =
  | { status: 'ok'; header: BarHeader }
  /** No header yet (magic 0 and nothing else): the guest has not started. */
  | { status: 'empty' }
  /** The guest is between the two sequence writes: read again later. */
  | { status: 'writing'; sequence: number }
  | { status: 'invalid'; problems: string[] };

/** Stable identity of a layout (equal keys: the same wl_buffer can stay). */
export function layoutKey(layout: BarLayout): string {
  const { fourcc, modifier, width, height, stride, offset } = layout;
  return `${fourcc}:${modifier}:${width}x${height}:${stride}@${offset}`;
}

/** The sequence field alone (read first and last to detect a torn read). */
export function readSequence(view: DataView): number {
  return view.byteLength >= Field.sequence + 4 ? view.getUint32(Field.sequence, true) : 0;
}

function roundUp(value: bigint, alignment: bigint): bigint {
  return ((value + alignment - 1n) / alignment) * alignment;
}

/**
 * Reads and checks the header from `view` (at least the header page of a BAR of `barSize`
 * bytes). Every field is checked against the BAR before anything trusts it.
 */
export function parseBarHeader(view: DataView, barSize: number | bigint): HeaderResult {
  const problems: string[] = [];
  let bar: bigint;
  try {
    bar = BigInt(barSize);
  } catch {
    return { status: 'invalid', problems: [`BAR size ${String(barSize)} is not an integer`] };
  }
  if (bar < BigInt(BAR_HEADER_PAGE) * 2n) {
    return { status: 'invalid', problems: [`BAR of ${bar} bytes has no room past the header`] };
  }
  if (view.byteLength < BAR_HEADER_SIZE_V1) {
    return { status: 'invalid', problems: [`header view of ${view.byteLength} bytes is short`] };
  }
  const u32 = (at: number) => view.getUint32(at, true);
  const magic = u32(Field.magic);
  if (magic === 0 && u32(Field.version) === 0) return { status: 'empty' };
  if (magic !== BAR_MAGIC) {
    return {
      status: 'invalid',
      problems: [`bad magic 0x${magic.toString(16).padStart(8, '0')} (want "GFBR")`],
    };
  }
  const version = view.getUint16(Field.version, true);
  const headerSize = view.getUint16(Field.headerSize, true);
  if (version < 1 || version > BAR_VERSION) {
    return { status: 'invalid', problems: [`unsupported header version ${version}`] };
  }
  if (headerSize < BAR_HEADER_SIZE_V1 || headerSize > HOST_AREA_OFFSET) {
    problems.push(
      `header size ${headerSize} is outside ${BAR_HEADER_SIZE_V1}..${HOST_AREA_OFFSET}`,
    );
  }
  const sequence = u32(Field.sequence);
  if (sequence % 2 === 1) return { status: 'writing', sequence };

  const fourcc = u32(Field.fourcc);
  const modifier = view.getBigUint64(Field.modifier, true);
  const width = u32(Field.width);
  const height = u32(Field.height);
  const stride = u32(Field.stride);
  const offset = view.getBigUint64(Field.offset, true);
  const bpp = bytesPerPixel(fourcc);
  if (bpp === null)
    problems.push(`unknown fourcc 0x${fourcc.toString(16)} ("${fourccName(fourcc)}")`);
  if (modifier !== DRM_FORMAT_MOD_LINEAR) {
    problems.push(`modifier 0x${modifier.toString(16)} is not LINEAR`);
  }
  if (width < 1 || width > MAX_DIMENSION)
    problems.push(`width ${width} is outside 1..${MAX_DIMENSION}`);
  if (height < 1 || height > MAX_DIMENSION) {
    problems.push(`height ${height} is outside 1..${MAX_DIMENSION}`);
  }
  if (stride < 1 || stride > 0x7fffffff) problems.push(`stride ${stride} is outside 1..2^31-1`);
  else if (bpp !== null && BigInt(stride) < BigInt(width) * BigInt(bpp)) {
    problems.push(`stride ${stride} is below ${width} pixels of ${bpp} bytes`);
  }
  if (offset % BigInt(BAR_ALIGNMENT) !== 0n) {
    problems.push(`framebuffer offset ${offset} is not ${BAR_ALIGNMENT}-byte aligned`);
  } else if (offset < BigInt(BAR_HEADER_PAGE)) {
    problems.push(`framebuffer offset ${offset} overlaps the header page`);
  }
  // Rows are stride apart; the last row needs only its pixels, but the span is whole pages.
  const bytes = BigInt(stride) * BigInt(height);
  const end = offset + bytes;
  if (stride >= 1 && height >= 1 && end > bar) {
    problems.push(
      `framebuffer ${offset}+${stride}x${height} ends at ${end}, past the ${bar}-byte BAR`,
    );
  }
  const damageCount = u32(Field.damageCount);
  if (damageCount > MAX_DAMAGE_RECTS) {
    problems.push(`damage count ${damageCount} is above ${MAX_DAMAGE_RECTS}`);
  }
  if (problems.length > 0) return { status: 'invalid', problems };

  const damage: Rect[] = [];
  for (let i = 0; i < damageCount; i++) {
    const at = Field.damage + i * 16;
    const x = BigInt(u32(at));
    const y = BigInt(u32(at + 4));
    const x2 = x + BigInt(u32(at + 8));
    const y2 = y + BigInt(u32(at + 12));
    const cx = x < BigInt(width) ? x : BigInt(width);
    const cy = y < BigInt(height) ? y : BigInt(height);
    const cx2 = x2 < BigInt(width) ? x2 : BigInt(width);
    const cy2 = y2 < BigInt(height) ? y2 : BigInt(height);
    if (cx2 > cx && cy2 > cy) {
      damage.push({
        x: Number(cx),
        y: Number(cy),
        width: Number(cx2 - cx),
        height: Number(cy2 - cy),
      });
    }
  }
  const layout: BarLayout = {
    fourcc,
    modifier,
    width,
    height,
    stride,
    offset: Number(offset),
    span: Number(roundUp(bytes, BigInt(BAR_ALIGNMENT))),
  };
  const { cursor, problem } = parseCursor(view, bar);
  const requestAck = version >= BAR_VERSION_REQUESTS ? u32(Field.requestAck) : null;
  return {
    status: 'ok',
    header: {
      version,
      headerSize,
      requestAck,
      sequence,
      layout,
      damage,
      cursor,
      cursorProblem: problem,
    },
  };
}

function parseCursor(
  view: DataView,
  bar: bigint,
): { cursor: BarCursor | null; problem: string | null } {
  const u32 = (at: number) => view.getUint32(at, true);
  const visible = u32(Field.cursorVisible);
  if (visible === 0) return { cursor: null, problem: null };
  if (visible !== 1) return { cursor: null, problem: `cursor visible flag ${visible} is not 0/1` };
  const x = view.getInt32(Field.cursorX, true);
  const y = view.getInt32(Field.cursorY, true);
  const hotX = u32(Field.cursorHotX);
  const hotY = u32(Field.cursorHotY);
  const width = u32(Field.cursorWidth);
  const height = u32(Field.cursorHeight);
  const imageOffset = view.getBigUint64(Field.cursorOffset, true);
  const serial = u32(Field.cursorSerial);
  if (width < 1 || width > MAX_CURSOR_SIZE || height < 1 || height > MAX_CURSOR_SIZE) {
    return { cursor: null, problem: `cursor ${width}x${height} is outside 1x1..256x256` };
  }
  if (hotX >= width || hotY >= height) {
    return { cursor: null, problem: `cursor hotspot ${hotX},${hotY} is outside the image` };
  }
  if (x < -MAX_DIMENSION || y < -MAX_DIMENSION || x > 2 * MAX_DIMENSION || y > 2 * MAX_DIMENSION) {
    return { cursor: null, problem: `cursor position ${x},${y} is absurd` };
  }
  const imageBytes = BigInt(width) * BigInt(height) * 4n;
  if (imageOffset % 4n !== 0n || imageOffset < BigInt(BAR_HEADER_PAGE)) {
    return {
      cursor: null,
      problem: `cursor image offset ${imageOffset} is unaligned or in the header`,
    };
  }
  if (imageOffset + imageBytes > bar) {
    return { cursor: null, problem: `cursor image at ${imageOffset} runs past the BAR` };
  }
  return {
    cursor: {
      visible: true,
      x,
      y,
      hotX,
      hotY,
      width,
      height,
      imageOffset: Number(imageOffset),
      serial,
    },
    problem: null,
  };
}

/** The values a writer puts in a header (tests and the host-side twin of barwriter). */
export interface HeaderFields {
  magic?: number;
  version?: number;
  headerSize?: number;
  fourcc: number;
  modifier?: bigint;
  width: number;
  height: number;
  stride: number;
  offset: bigint | number;
  sequence: number;
  damage?: Rect[];
  /** Overrides damage.length (hostile headers). */
  damageCount?: number;
  cursor?: Partial<Omit<BarCursor, 'visible'>> & { visible: number | boolean };
  /** Version 2: the last host request handled (written for any version; v1 reads ignore it). */
  requestAck?: number;
}

/** Writes a header into `view` (offset 0). Values are written as given, without checks. */
export function writeBarHeader(view: DataView, fields: HeaderFields): void {
  const set32 = (at: number, value: number) => view.setUint32(at, value >>> 0, true);
  set32(Field.magic, fields.magic ?? BAR_MAGIC);
  view.setUint16(Field.version, fields.version ?? BAR_VERSION, true);
  view.setUint16(Field.headerSize, fields.headerSize ?? BAR_HEADER_SIZE_V1, true);
  set32(Field.fourcc, fields.fourcc);
  set32(Field.flags, 0);
  view.setBigUint64(Field.modifier, fields.modifier ?? 0n, true);
  set32(Field.width, fields.width);
  set32(Field.height, fields.height);
  set32(Field.stride, fields.stride);
  view.setBigUint64(Field.offset, BigInt(fields.offset), true);
  const damage = fields.damage ?? [];
  set32(Field.damageCount, fields.damageCount ?? damage.length);
  for (let i = 0; i < Math.min(damage.length, MAX_DAMAGE_RECTS); i++) {
    const at = Field.damage + i * 16;
    set32(at, damage[i]!.x);
    set32(at + 4, damage[i]!.y);
    set32(at + 8, damage[i]!.width);
    set32(at + 12, damage[i]!.height);
  }
  const cursor = fields.cursor;
  set32(Field.cursorVisible, cursor ? Number(cursor.visible) : 0);
  if (cursor) {
    view.setInt32(Field.cursorX, cursor.x ?? 0, true);
    view.setInt32(Field.cursorY, cursor.y ?? 0, true);
    set32(Field.cursorHotX, cursor.hotX ?? 0);
    set32(Field.cursorHotY, cursor.hotY ?? 0);
    set32(Field.cursorWidth, cursor.width ?? 0);
    set32(Field.cursorHeight, cursor.height ?? 0);
    set32(Field.cursorSerial, cursor.serial ?? 0);
    view.setBigUint64(Field.cursorOffset, BigInt(cursor.imageOffset ?? 0), true);
  }
  set32(Field.requestAck, fields.requestAck ?? 0);
  set32(Field.sequence, fields.sequence);
}
