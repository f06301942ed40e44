/**
 * Decoders (and one encoder) for the kernel's binary DRM structures: mode infos, IN_FORMATS
 * blobs, u32 blobs and the event stream read from the device fd. Pure: no system call.
 */

// ---------------------------------------------------------------------------------------------
// Binary structures
// ---------------------------------------------------------------------------------------------

/** drm_mode_modeinfo. */
export interface ModeInfo {
  clock: number;
  hdisplay: number;
  hsyncStart: number;
  hsyncEnd: number;
  htotal: number;
  hskew: number;
  vdisplay: number;
  vsyncStart: number;
  vsyncEnd: number;
  vtotal: number;
  vscan: number;
  vrefresh: number;
  flags: number;
  type: number;
  name: string;
}

export const MODE_INFO_SIZE = 68;
const MODE_NAME_LENGTH = 32;

export function decodeModeInfo(bytes: Uint8Array, offset = 0): ModeInfo {
  if (offset < 0 || offset + MODE_INFO_SIZE > bytes.length) {
    throw new RangeError('mode info out of bounds');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, MODE_INFO_SIZE);
  const u16 = (at: number) => view.getUint16(at, true);
  const nameBytes = bytes.subarray(offset + 36, offset + 36 + MODE_NAME_LENGTH);
  const end = nameBytes.indexOf(0);
  return {
    clock: view.getUint32(0, true),
    hdisplay: u16(4),
    hsyncStart: u16(6),
    hsyncEnd: u16(8),
    htotal: u16(10),
    hskew: u16(12),
    vdisplay: u16(14),
    vsyncStart: u16(16),
    vsyncEnd: u16(18),
    vtotal: u16(20),
    vscan: u16(22),
    vrefresh: view.getUint32(24, true),
    flags: view.getUint32(28, true),
    type: view.getUint32(32, true),
    name: new TextDecoder().decode(end < 0 ? nameBytes : nameBytes.subarray(0, end)),
  };
}

export function decodeModeInfos(bytes: Uint8Array): ModeInfo[] {
  if (bytes.length % MODE_INFO_SIZE !== 0) throw new RangeError('mode list has a partial entry');
  const modes: ModeInfo[] = [];
  for (let at = 0; at < bytes.length; at += MODE_INFO_SIZE) modes.push(decodeModeInfo(bytes, at));
  return modes;
}

/** The 68 bytes of a mode, as a MODE_ID property blob carries them. */
export function encodeModeInfo(mode: ModeInfo): Uint8Array {
  const bytes = new Uint8Array(MODE_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  const u16 = (at: number, value: number, name: string) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
      throw new RangeError(`mode ${name} must be a 16-bit unsigned integer, got ${value}`);
    }
    view.setUint16(at, value, true);
  };
  const u32 = (at: number, value: number, name: string) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`mode ${name} must be a 32-bit unsigned integer, got ${value}`);
    }
    view.setUint32(at, value, true);
  };
  u32(0, mode.clock, 'clock');
  u16(4, mode.hdisplay, 'hdisplay');
  u16(6, mode.hsyncStart, 'hsyncStart');
  u16(8, mode.hsyncEnd, 'hsyncEnd');
  u16(10, mode.htotal, 'htotal');
  u16(12, mode.hskew, 'hskew');
  u16(14, mode.vdisplay, 'vdisplay');
  u16(16, mode.vsyncStart, 'vsyncStart');
  u16(18, mode.vsyncEnd, 'vsyncEnd');
  u16(20, mode.vtotal, 'vtotal');
  u16(22, mode.vscan, 'vscan');
  u32(24, mode.vrefresh, 'vrefresh');
  u32(28, mode.flags, 'flags');
  u32(32, mode.type, 'type');
  const name = new TextEncoder().encode(mode.name);
  // Leave room for the terminating NUL.
  bytes.set(name.subarray(0, MODE_NAME_LENGTH - 1), 36);
  return bytes;
}

export interface FormatModifier {
  format: number;
  modifier: bigint;
}

/**
 * Decodes an IN_FORMATS blob (struct drm_format_modifier_blob, version 1): a header, a u32
 * format list, and 24-byte entries whose 64-bit mask selects formats starting at `offset`.
 * Every count and offset is checked against the blob's length.
 */
export function decodeInFormats(blob: Uint8Array): FormatModifier[] {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (blob.length < 24) throw new RangeError('IN_FORMATS blob shorter than its header');
  const version = view.getUint32(0, true);
  if (version !== 1) throw new RangeError(`IN_FORMATS blob version ${version} is not 1`);
  const formatCount = view.getUint32(8, true);
  const formatsOffset = view.getUint32(12, true);
  const modifierCount = view.getUint32(16, true);
  const modifiersOffset = view.getUint32(20, true);
  // Counts are u32 and sizes 4 or 24 bytes: products stay far below 2^53.
  if (formatsOffset % 4 !== 0 || formatsOffset + formatCount * 4 > blob.length) {
    throw new RangeError('IN_FORMATS format list out of bounds');
  }
  if (modifiersOffset % 8 !== 0 || modifiersOffset + modifierCount * 24 > blob.length) {
    throw new RangeError('IN_FORMATS modifier list out of bounds');
  }
  const formats: number[] = [];
  for (let i = 0; i < formatCount; i++) formats.push(view.getUint32(formatsOffset + 4 * i, true));
  const pairs: FormatModifier[] = [];
  for (let m = 0; m < modifierCount; m++) {
    const at = modifiersOffset + 24 * m;
    const mask = view.getBigUint64(at, true);
    const first = view.getUint32(at + 8, true);
    const modifier = view.getBigUint64(at + 16, true);
    for (let bit = 0; bit < 64; bit++) {
      if ((mask >> BigInt(bit)) & 1n) {
        const index = first + bit;
        if (index >= formatCount) throw new RangeError('IN_FORMATS mask selects a missing format');
        pairs.push({ format: formats[index]!, modifier });
      }
    }
  }
  return pairs;
}

/** A u32 list blob (WRITEBACK_PIXEL_FORMATS). */
export function decodeU32Blob(blob: Uint8Array): number[] {
  if (blob.length % 4 !== 0) throw new RangeError('u32 blob has a partial entry');
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  return Array.from({ length: blob.length / 4 }, (_, i) => view.getUint32(4 * i, true));
}

export const DRM_EVENT_VBLANK = 1;
export const DRM_EVENT_FLIP_COMPLETE = 2;
export const DRM_EVENT_CRTC_SEQUENCE = 3;

export interface DrmEvent {
  type: number;
  /** For vblank / flip-complete events (32 bytes). */
  userData?: bigint;
  seconds?: number;
  microseconds?: number;
  sequence?: number;
  crtcId?: number;
}

/** Splits a read() of the DRM fd into events (struct drm_event headers, 8 bytes each). */
export function decodeDrmEvents(bytes: Uint8Array): DrmEvent[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const events: DrmEvent[] = [];
  for (let at = 0; at < bytes.length;) {
    if (at + 8 > bytes.length) throw new RangeError('truncated DRM event header');
    const type = view.getUint32(at, true);
    const length = view.getUint32(at + 4, true);
    if (length < 8 || at + length > bytes.length) throw new RangeError('bad DRM event length');
    const event: DrmEvent = { type };
    if ((type === DRM_EVENT_VBLANK || type === DRM_EVENT_FLIP_COMPLETE) && length >= 32) {
      event.userData = view.getBigUint64(at + 8, true);
      event.seconds = view.getUint32(at + 16, true);
      event.microseconds = view.getUint32(at + 20, true);
      event.sequence = view.getUint32(at + 24, true);
      event.crtcId = view.getUint32(at + 28, true);
    }
    events.push(event);
    at += length;
  }
  return events;
}
