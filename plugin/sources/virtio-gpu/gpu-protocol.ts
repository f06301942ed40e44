/**
 * virtio-gpu wire constants and layouts (virtio 1.2, section "GPU Device"). All fields are
 * little-endian. Pure helpers only.
 */
import { DrmFormat } from '../../common/formats.js';

export const Cmd = {
  GET_DISPLAY_INFO: 0x0100,
  RESOURCE_CREATE_2D: 0x0101,
  RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103,
  RESOURCE_FLUSH: 0x0104,
  TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106,
  RESOURCE_DETACH_BACKING: 0x0107,
  GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109,
  GET_EDID: 0x010a,
  RESOURCE_ASSIGN_UUID: 0x010b,
  RESOURCE_CREATE_BLOB: 0x010c,
  SET_SCANOUT_BLOB: 0x010d,
  UPDATE_CURSOR: 0x0300,
  MOVE_CURSOR: 0x0301,
} as const;

export const Resp = {
  OK_NODATA: 0x1100,
  OK_DISPLAY_INFO: 0x1101,
  OK_CAPSET_INFO: 0x1102,
  OK_CAPSET: 0x1103,
  OK_EDID: 0x1104,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

const commandNames = new Map<number, string>(
  Object.entries(Cmd).map(([name, value]) => [value, name]),
);
const responseNames = new Map<number, string>(
  Object.entries(Resp).map(([name, value]) => [value, name]),
);

export function commandName(type: number): string {
  return commandNames.get(type) ?? `0x${type.toString(16)}`;
}

export function responseName(type: number): string {
  return responseNames.get(type) ?? `0x${type.toString(16)}`;
}

export const CtrlFlag = { FENCE: 1, INFO_RING_IDX: 2 } as const;

export const MAX_SCANOUTS = 16;
export const HDR_SIZE = 24;
export const MEM_ENTRY_SIZE = 16;
export const DISPLAY_INFO_SIZE = HDR_SIZE + MAX_SCANOUTS * 24;
export const EDID_RESPONSE_SIZE = HDR_SIZE + 8 + 1024;
export const CURSOR_SIZE = 64;

/** Request sizes (header included) by command. */
export const RequestSize: Record<number, number> = {
  [Cmd.GET_DISPLAY_INFO]: HDR_SIZE,
  [Cmd.RESOURCE_CREATE_2D]: HDR_SIZE + 16,
  [Cmd.RESOURCE_UNREF]: HDR_SIZE + 8,
  [Cmd.SET_SCANOUT]: HDR_SIZE + 24,
  [Cmd.RESOURCE_FLUSH]: HDR_SIZE + 24,
  [Cmd.TRANSFER_TO_HOST_2D]: HDR_SIZE + 32,
  [Cmd.RESOURCE_ATTACH_BACKING]: HDR_SIZE + 8,
  [Cmd.RESOURCE_DETACH_BACKING]: HDR_SIZE + 8,
  [Cmd.GET_CAPSET_INFO]: HDR_SIZE + 8,
  [Cmd.GET_CAPSET]: HDR_SIZE + 8,
  [Cmd.GET_EDID]: HDR_SIZE + 8,
  [Cmd.RESOURCE_CREATE_BLOB]: HDR_SIZE + 32,
  [Cmd.SET_SCANOUT_BLOB]: HDR_SIZE + 72,
  [Cmd.UPDATE_CURSOR]: HDR_SIZE + 32,
  [Cmd.MOVE_CURSOR]: HDR_SIZE + 32,
};

export const BlobMem = { GUEST: 1, HOST3D: 2, HOST3D_GUEST: 3 } as const;
export const BlobFlag = { USE_MAPPABLE: 1, USE_SHAREABLE: 2, USE_CROSS_DEVICE: 4 } as const;

export interface CtrlHeader {
  type: number;
  flags: number;
  fenceId: bigint;
  ctxId: number;
  ringIdx: number;
}

export function readHeader(view: DataView): CtrlHeader {
  return readHeaderInto(view, { type: 0, flags: 0, fenceId: 0n, ctxId: 0, ringIdx: 0 });
}

/**
 * Reads a request header into `out` (reused per command: nothing allocated). The fence id, a
 * BigInt, is read only when the FENCE flag asks for it to be echoed.
 */
export function readHeaderInto(view: DataView, out: CtrlHeader): CtrlHeader {
  out.type = view.getUint32(0, true);
  out.flags = view.getUint32(4, true);
  out.fenceId = out.flags & CtrlFlag.FENCE ? view.getBigUint64(8, true) : 0n;
  out.ctxId = view.getUint32(16, true);
  out.ringIdx = view.getUint8(20);
  return out;
}

/** Writes a response header; a fenced request's fence id, context and ring index are echoed. */
export function writeResponseHeader(
  view: DataView,
  type: number,
  request: CtrlHeader | null,
): void {
  view.setUint32(0, type, true);
  let flags = 0;
  if (request && request.flags & CtrlFlag.FENCE) {
    flags = CtrlFlag.FENCE | (request.flags & CtrlFlag.INFO_RING_IDX);
    view.setBigUint64(8, request.fenceId, true);
    view.setUint32(16, request.ctxId, true);
    if (flags & CtrlFlag.INFO_RING_IDX) view.setUint8(20, request.ringIdx);
  }
  view.setUint32(4, flags, true);
}

export function encodeHeaderResponse(type: number, request: CtrlHeader | null): Uint8Array {
  const out = new Uint8Array(HDR_SIZE);
  writeResponseHeader(new DataView(out.buffer), type, request);
  return out;
}

export interface WireRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export function readRect(view: DataView, at: number): WireRect {
  return {
    x: view.getUint32(at, true),
    y: view.getUint32(at + 4, true),
    width: view.getUint32(at + 8, true),
    height: view.getUint32(at + 12, true),
  };
}

/** True when `rect` (u32 fields) is non-empty and inside width x height. Overflow-free. */
export function rectInside(rect: WireRect, width: number, height: number): boolean {
  return rectFits(rect.x, rect.y, rect.width, rect.height, width, height);
}

/** rectInside on plain numbers (u32 values), for the per-frame commands. */
export function rectFits(
  x: number,
  y: number,
  w: number,
  h: number,
  width: number,
  height: number,
): boolean {
  return w > 0 && h > 0 && x <= width && y <= height && w <= width - x && h <= height - y;
}

export function intersect(a: WireRect, b: WireRect): WireRect | null {
  const x0 = Math.max(a.x, b.x);
  const y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width);
  const y1 = Math.min(a.y + a.height, b.y + b.height);
  if (x1 <= x0 || y1 <= y0) return null;
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/** virtio_gpu_formats: names give the byte order in memory. */
export const VirtioFormat = {
  B8G8R8A8_UNORM: 1,
  B8G8R8X8_UNORM: 2,
  A8R8G8B8_UNORM: 3,
  X8R8G8B8_UNORM: 4,
  R8G8B8A8_UNORM: 67,
  X8B8G8R8_UNORM: 68,
  A8B8G8R8_UNORM: 121,
  R8G8B8X8_UNORM: 134,
} as const;

export { DrmFormat, fourcc } from '../../common/formats.js';

/**
 * virtio format -> DRM fourcc. DRM names list components from the most significant bit of a
 * little-endian word, virtio names list bytes in memory order, so they read reversed:
 * B8G8R8X8 (bytes B,G,R,X) is DRM XRGB8888.
 */
const formatTable = new Map<number, number>([
  [VirtioFormat.B8G8R8A8_UNORM, DrmFormat.ARGB8888],
  [VirtioFormat.B8G8R8X8_UNORM, DrmFormat.XRGB8888],
  [VirtioFormat.A8R8G8B8_UNORM, DrmFormat.BGRA8888],
  [VirtioFormat.X8R8G8B8_UNORM, DrmFormat.BGRX8888],
  [VirtioFormat.R8G8B8A8_UNORM, DrmFormat.ABGR8888],
  [VirtioFormat.X8B8G8R8_UNORM, DrmFormat.RGBX8888],
  [VirtioFormat.A8B8G8R8_UNORM, DrmFormat.RGBA8888],
  [VirtioFormat.R8G8B8X8_UNORM, DrmFormat.XBGR8888],
]);

/** The DRM fourcc for a virtio format, or null when unknown. All are 4 bytes per pixel. */
export function drmFourcc(virtioFormat: number): number | null {
  return formatTable.get(virtioFormat) ?? null;
}

export const BYTES_PER_PIXEL = 4;

/** A human-readable fourcc for logs. */
export function fourccName(code: number): string {
  return String.fromCharCode(code & 0xff, (code >>> 8) & 0xff, (code >>> 16) & 0xff, code >>> 24);
}

// ---------------------------------------------------------------------------------------------
// Encoders for requests (tests and the fuzzer build guest traffic with these)
// ---------------------------------------------------------------------------------------------

export interface RequestOptions {
  fenceId?: bigint;
  ctxId?: number;
  flags?: number;
}

/** A request: header of `type` followed by u32 words (and optional raw tail bytes). */
export function encodeRequest(
  type: number,
  words: readonly number[],
  options: RequestOptions = {},
  tail?: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(HDR_SIZE + 4 * words.length + (tail?.length ?? 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, type, true);
  let flags = options.flags ?? 0;
  if (options.fenceId !== undefined) flags |= CtrlFlag.FENCE;
  view.setUint32(4, flags, true);
  view.setBigUint64(8, options.fenceId ?? 0n, true);
  view.setUint32(16, options.ctxId ?? 0, true);
  words.forEach((word, i) => view.setUint32(HDR_SIZE + 4 * i, word >>> 0, true));
  if (tail) out.set(tail, HDR_SIZE + 4 * words.length);
  return out;
}

/** mem entries: addr u64, length u32, padding u32. */
export function encodeMemEntries(
  entries: readonly { addr: number | bigint; length: number }[],
): Uint8Array {
  const out = new Uint8Array(entries.length * MEM_ENTRY_SIZE);
  const view = new DataView(out.buffer);
  entries.forEach((entry, i) => {
    view.setBigUint64(i * 16, BigInt(entry.addr), true);
    view.setUint32(i * 16 + 8, entry.length >>> 0, true);
  });
  return out;
}
