/**
 * guestfb's own DRM/KMS binding (the npm registry has no maintained `node-drm`): the raw native
 * calls (native/src/drm.cc), decoders for the kernel's binary structures (mode infos, IN_FORMATS
 * blobs, events), and DrmDevice, a small typed layer with properties by name and atomic commits.
 *
 * Ownership: DrmDevice owns its device fd. GEM handles, framebuffers, property blobs and dumb
 * buffers belong to the device fd too (the kernel drops them when it closes); the methods that
 * create them have a matching method that releases them. Fds passed in are borrowed; fence fds
 * returned by commit() are owned by the caller.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { native, type SystemError } from './index.js';
import { fd as fdModule } from './fd.js';

// ---------------------------------------------------------------------------------------------
// Raw native calls
// ---------------------------------------------------------------------------------------------

export interface RawResources {
  fbs: number[];
  crtcs: number[];
  connectors: number[];
  encoders: number[];
  minWidth: number;
  maxWidth: number;
  minHeight: number;
  maxHeight: number;
}

export interface RawConnector {
  id: number;
  type: number;
  typeId: number;
  /** 1 connected, 2 disconnected, 3 unknown. */
  status: number;
  mmWidth: number;
  mmHeight: number;
  subpixel: number;
  encoderId: number;
  encoders: number[];
  /** count × 68 bytes of drm_mode_modeinfo. */
  modes: Uint8Array;
}

export interface RawEncoder {
  id: number;
  type: number;
  crtcId: number;
  possibleCrtcs: number;
  possibleClones: number;
}

export interface RawCrtc {
  id: number;
  fbId: number;
  x: number;
  y: number;
  width: number;
  height: number;
  modeValid: boolean;
  /** 68 bytes of drm_mode_modeinfo. */
  mode: Uint8Array;
  gammaSize: number;
}

export interface RawPlane {
  id: number;
  crtcId: number;
  fbId: number;
  /** Bitmask over the resources' CRTC indices. */
  possibleCrtcs: number;
  formats: number[];
}

export interface RawProperty {
  id: number;
  name: string;
  flags: number;
  values: bigint[];
  enums: { name: string; value: bigint }[];
}

export interface FramebufferSpec {
  width: number;
  height: number;
  format: number;
  /** Per plane (up to 4). */
  handles: number[];
  pitches: number[];
  offsets: number[];
  /** Per plane; when present, AddFB2 gets DRM_MODE_FB_MODIFIERS. */
  modifiers?: bigint[];
}

export interface OutFenceRequest {
  objectId: number;
  propertyId: number;
}

export interface DrmAddon {
  /** open(path, O_RDWR | O_CLOEXEC). */
  open(path: string): number;
  getVersion(fd: number): {
    name: string;
    major: number;
    minor: number;
    patch: number;
    date: string;
    description: string;
  };
  setClientCap(fd: number, capability: number, value: number | bigint): void;
  getCap(fd: number, capability: number): bigint;
  getResources(fd: number): RawResources;
  getConnector(fd: number, connectorId: number): RawConnector;
  getEncoder(fd: number, encoderId: number): RawEncoder;
  getCrtc(fd: number, crtcId: number): RawCrtc;
  getPlaneResources(fd: number): number[];
  getPlane(fd: number, planeId: number): RawPlane;
  getObjectProperties(
    fd: number,
    objectId: number,
    objectType: number,
  ): { ids: number[]; values: bigint[] };
  getProperty(fd: number, propertyId: number): RawProperty;
  getPropertyBlob(fd: number, blobId: number): Uint8Array;
  createPropertyBlob(fd: number, data: Uint8Array): number;
  destroyPropertyBlob(fd: number, blobId: number): void;
  /** drmPrimeFDToHandle. Borrows primeFd. The same buffer always yields the same handle. */
  primeFdToHandle(fd: number, primeFd: number): number;
  /** drmPrimeHandleToFD(DRM_CLOEXEC | DRM_RDWR): a new dma-buf fd owned by the caller. */
  primeHandleToFd(fd: number, handle: number): number;
  gemClose(fd: number, handle: number): void;
  addFb2(fd: number, spec: FramebufferSpec): number;
  rmFb(fd: number, fbId: number): void;
  /**
   * drmModeAtomicAlloc/AddProperty/Commit. Returns one fd per `outFences` entry (-1 when the
   * kernel made none), owned by the caller.
   */
  atomicCommit(
    fd: number,
    objectIds: number[],
    propertyIds: number[],
    values: bigint[],
    flags: number,
    userData?: bigint,
    outFences?: OutFenceRequest[],
  ): number[];
  createDumb(
    fd: number,
    width: number,
    height: number,
    bpp: number,
  ): { handle: number; pitch: number; size: number };
  /** DRM_IOCTL_MODE_MAP_DUMB: the fake offset to mmap the device fd at. */
  mapDumb(fd: number, handle: number): number;
  destroyDumb(fd: number, handle: number): void;
  /** drmGetFormatName: the fourcc's four characters ("XR24"), trailing spaces dropped. */
  formatName(format: number): string;
  /** Pending event bytes, or null when none are queued (never blocks). */
  readEvents(fd: number): Uint8Array | null;
}

export const drm = (native as unknown as { drm: DrmAddon }).drm;

// ---------------------------------------------------------------------------------------------
// Constants (drm.h, drm_mode.h, drm_fourcc.h)
// ---------------------------------------------------------------------------------------------

export const ClientCap = {
  STEREO_3D: 1,
  UNIVERSAL_PLANES: 2,
  ATOMIC: 3,
  ASPECT_RATIO: 4,
  WRITEBACK_CONNECTORS: 5,
} as const;

export const Cap = {
  DUMB_BUFFER: 0x1,
  PRIME: 0x5,
  ADDFB2_MODIFIERS: 0x10,
} as const;

export const ObjectType = {
  CRTC: 0xcccccccc,
  CONNECTOR: 0xc0c0c0c0,
  ENCODER: 0xe0e0e0e0,
  MODE: 0xdededede,
  PROPERTY: 0xb0b0b0b0,
  FB: 0xfbfbfbfb,
  BLOB: 0xbbbbbbbb,
  PLANE: 0xeeeeeeee,
} as const;

export const PropertyFlag = {
  PENDING: 1,
  RANGE: 2,
  IMMUTABLE: 4,
  ENUM: 8,
  BLOB: 16,
  BITMASK: 32,
  EXTENDED_TYPE: 0xffc0,
  OBJECT: 1 << 6,
  SIGNED_RANGE: 2 << 6,
  ATOMIC: 0x80000000,
} as const;

export const AtomicFlag = {
  PAGE_FLIP_EVENT: 0x1,
  TEST_ONLY: 0x100,
  NONBLOCK: 0x200,
  ALLOW_MODESET: 0x400,
} as const;

export const ModeType = { PREFERRED: 1 << 3, DRIVER: 1 << 6, USERDEF: 1 << 5 } as const;

const CONNECTOR_TYPE_NAMES = [
  'Unknown',
  'VGA',
  'DVI-I',
  'DVI-D',
  'DVI-A',
  'Composite',
  'SVIDEO',
  'LVDS',
  'Component',
  'DIN',
  'DP',
  'HDMI-A',
  'HDMI-B',
  'TV',
  'eDP',
  'Virtual',
  'DSI',
  'DPI',
  'Writeback',
  'SPI',
  'USB',
];

/** The kernel's connector type name ("Virtual", "Writeback", ...). */
export function connectorTypeName(type: number): string {
  return CONNECTOR_TYPE_NAMES[type] ?? `Type${type}`;
}

export const CONNECTOR_TYPE_WRITEBACK = 18;

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

// ---------------------------------------------------------------------------------------------
// Typed objects
// ---------------------------------------------------------------------------------------------

export interface DrmProperty {
  id: number;
  name: string;
  flags: number;
  /** The object's current value (u64; signed ranges come back as two's complement). */
  value: bigint;
  /** Enum and bitmask entries by name. */
  enums: Map<string, bigint>;
  /** The name of the current enum value, when the property is an enum. */
  enumName: string | null;
  /** Range properties: [min, max]. */
  range: [bigint, bigint] | null;
}

export type PropertyMap = Map<string, DrmProperty>;

export interface DrmObject {
  id: number;
  properties: PropertyMap;
}

export type ConnectorStatus = 'connected' | 'disconnected' | 'unknown';

export interface DrmConnector extends DrmObject {
  type: number;
  typeName: string;
  /** "Virtual-1", "Writeback-1", as the kernel names them. */
  name: string;
  status: ConnectorStatus;
  modes: ModeInfo[];
  encoders: number[];
  /** CRTC ids any of its encoders can drive. */
  possibleCrtcs: number[];
  writeback: boolean;
}

export interface DrmCrtc extends DrmObject {
  index: number;
  fbId: number;
  mode: ModeInfo | null;
}

export type PlaneType = 'primary' | 'overlay' | 'cursor';

export interface DrmPlane extends DrmObject {
  type: PlaneType;
  possibleCrtcs: number[];
  formats: number[];
  /** From the IN_FORMATS blob, or null when the plane has none. */
  inFormats: FormatModifier[] | null;
}

/** Builds the property list of one atomic commit. */
export class AtomicRequest {
  readonly objectIds: number[] = [];
  readonly propertyIds: number[] = [];
  readonly values: bigint[] = [];
  readonly outFences: OutFenceRequest[] = [];

  /** Sets a property by id. Negative values are stored as two's complement (signed ranges). */
  add(objectId: number, propertyId: number, value: bigint | number): this {
    const big = typeof value === 'bigint' ? value : BigInt(value);
    this.objectIds.push(objectId);
    this.propertyIds.push(propertyId);
    this.values.push(BigInt.asUintN(64, big));
    return this;
  }

  /** Sets a property by name; throws when the object does not have it. */
  set(object: DrmObject, name: string, value: bigint | number): this {
    return this.add(object.id, propertyOf(object, name).id, value);
  }

  /** Asks for an out fence through a *_OUT_FENCE_PTR property; returns its index in commit()'s
   * result. */
  outFence(object: DrmObject, name: string): number {
    this.outFences.push({ objectId: object.id, propertyId: propertyOf(object, name).id });
    return this.outFences.length - 1;
  }
}

export function propertyOf(object: DrmObject, name: string): DrmProperty {
  const property = object.properties.get(name);
  if (property === undefined) throw new Error(`DRM object ${object.id} has no property ${name}`);
  return property;
}

/** Mask bits (over CRTC indices) to CRTC ids. */
function crtcIdsOf(mask: number, crtcs: readonly number[]): number[] {
  return crtcs.filter((_, index) => (mask >>> index) & 1);
}

const STATUS_NAMES: Record<number, ConnectorStatus> = {
  1: 'connected',
  2: 'disconnected',
  3: 'unknown',
};

export class DrmDevice {
  private fdNumber: number;

  private constructor(fd: number) {
    this.fdNumber = fd;
  }

  /** Opens a DRM device node; the device owns the fd. */
  static open(devicePath: string): DrmDevice {
    return new DrmDevice(drm.open(devicePath));
  }

  /** Takes ownership of an already open DRM fd. */
  static fromFd(fd: number): DrmDevice {
    return new DrmDevice(fd);
  }

  /** The card nodes under /dev/dri (sorted), or [] when there are none. */
  static cardPaths(dir = '/dev/dri'): string[] {
    try {
      return readdirSync(dir)
        .filter((name) => /^card[0-9]+$/.test(name))
        .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))
        .map((name) => path.join(dir, name));
    } catch {
      return [];
    }
  }

  /** Opens the first card whose driver is `driverName` (e.g. "vkms"), or returns null. */
  static openByDriver(driverName: string, dir = '/dev/dri'): DrmDevice | null {
    for (const cardPath of DrmDevice.cardPaths(dir)) {
      const device = DrmDevice.open(cardPath);
      if (device.version().name === driverName) return device;
      device.close();
    }
    return null;
  }

  get fd(): number {
    if (this.fdNumber < 0) throw new Error('the DRM device is closed');
    return this.fdNumber;
  }

  get closed(): boolean {
    return this.fdNumber < 0;
  }

  /** Closes the device fd; the kernel drops its framebuffers, blobs and handles. Idempotent. */
  close(): void {
    if (this.fdNumber < 0) return;
    const fd = this.fdNumber;
    this.fdNumber = -1;
    fdModule.close(fd);
  }

  version() {
    return drm.getVersion(this.fd);
  }

  setClientCap(capability: number, value: number | bigint = 1): void {
    drm.setClientCap(this.fd, capability, value);
  }

  /** Universal planes, atomic and (when asked) writeback connectors. */
  enableAtomic(writeback = false): void {
    this.setClientCap(ClientCap.UNIVERSAL_PLANES);
    this.setClientCap(ClientCap.ATOMIC);
    if (writeback) this.setClientCap(ClientCap.WRITEBACK_CONNECTORS);
  }

  getCap(capability: number): bigint {
    return drm.getCap(this.fd, capability);
  }

  properties(objectId: number, objectType: number): PropertyMap {
    const { ids, values } = drm.getObjectProperties(this.fd, objectId, objectType);
    const map: PropertyMap = new Map();
    ids.forEach((id, index) => {
      const raw = drm.getProperty(this.fd, id);
      const value = values[index]!;
      const enums = new Map(raw.enums.map((entry) => [entry.name, entry.value]));
      const isEnum = (raw.flags & PropertyFlag.ENUM) !== 0;
      const isRange =
        (raw.flags & PropertyFlag.RANGE) !== 0 ||
        (raw.flags & PropertyFlag.EXTENDED_TYPE) === PropertyFlag.SIGNED_RANGE;
      map.set(raw.name, {
        id,
        name: raw.name,
        flags: raw.flags,
        value,
        enums,
        enumName: isEnum ? (raw.enums.find((entry) => entry.value === value)?.name ?? null) : null,
        range: isRange && raw.values.length >= 2 ? [raw.values[0]!, raw.values[1]!] : null,
      });
    });
    return map;
  }

  resources(): RawResources {
    return drm.getResources(this.fd);
  }

  connectors(): DrmConnector[] {
    const resources = this.resources();
    return resources.connectors.map((id) => {
      const raw = drm.getConnector(this.fd, id);
      let crtcMask = 0;
      for (const encoderId of raw.encoders) {
        crtcMask |= drm.getEncoder(this.fd, encoderId).possibleCrtcs;
      }
      const typeName = connectorTypeName(raw.type);
      return {
        id,
        type: raw.type,
        typeName,
        name: `${typeName}-${raw.typeId}`,
        status: STATUS_NAMES[raw.status] ?? 'unknown',
        modes: decodeModeInfos(raw.modes),
        encoders: raw.encoders,
        possibleCrtcs: crtcIdsOf(crtcMask, resources.crtcs),
        writeback: raw.type === CONNECTOR_TYPE_WRITEBACK,
        properties: this.properties(id, ObjectType.CONNECTOR),
      };
    });
  }

  crtcs(): DrmCrtc[] {
    return this.resources().crtcs.map((id, index) => {
      const raw = drm.getCrtc(this.fd, id);
      return {
        id,
        index,
        fbId: raw.fbId,
        mode: raw.modeValid ? decodeModeInfo(raw.mode) : null,
        properties: this.properties(id, ObjectType.CRTC),
      };
    });
  }

  planes(): DrmPlane[] {
    const crtcs = this.resources().crtcs;
    return drm.getPlaneResources(this.fd).map((id) => {
      const raw = drm.getPlane(this.fd, id);
      const properties = this.properties(id, ObjectType.PLANE);
      const typeName = properties.get('type')?.enumName;
      const type: PlaneType =
        typeName === 'Primary' ? 'primary' : typeName === 'Cursor' ? 'cursor' : 'overlay';
      const inFormatsBlob = properties.get('IN_FORMATS')?.value ?? 0n;
      return {
        id,
        type,
        possibleCrtcs: crtcIdsOf(raw.possibleCrtcs, crtcs),
        formats: raw.formats,
        inFormats: inFormatsBlob === 0n ? null : decodeInFormats(this.blob(Number(inFormatsBlob))),
        properties,
      };
    });
  }

  blob(blobId: number): Uint8Array {
    return drm.getPropertyBlob(this.fd, blobId);
  }

  createBlob(data: Uint8Array): number {
    return drm.createPropertyBlob(this.fd, data);
  }

  createModeBlob(mode: ModeInfo): number {
    return this.createBlob(encodeModeInfo(mode));
  }

  destroyBlob(blobId: number): void {
    drm.destroyPropertyBlob(this.fd, blobId);
  }

  /** Imports a dma-buf (borrowed) as a GEM handle; release it with closeHandle. */
  importDmabuf(dmabufFd: number): number {
    return drm.primeFdToHandle(this.fd, dmabufFd);
  }

  /** Exports a GEM handle as a new dma-buf fd owned by the caller. */
  exportDmabuf(handle: number): number {
    return drm.primeHandleToFd(this.fd, handle);
  }

  closeHandle(handle: number): void {
    drm.gemClose(this.fd, handle);
  }

  addFramebuffer(spec: FramebufferSpec): number {
    return drm.addFb2(this.fd, spec);
  }

  removeFramebuffer(fbId: number): void {
    drm.rmFb(this.fd, fbId);
  }

  /** Commits; returns the out-fence fds in the order they were requested (owned by caller). */
  commit(request: AtomicRequest, flags = 0, userData = 0n): number[] {
    return drm.atomicCommit(
      this.fd,
      request.objectIds,
      request.propertyIds,
      request.values,
      flags,
      userData,
      request.outFences,
    );
  }

  /** Pending page-flip / vblank events, decoded ([] when none). */
  readEvents(): DrmEvent[] {
    const bytes = drm.readEvents(this.fd);
    return bytes === null ? [] : decodeDrmEvents(bytes);
  }

  createDumb(width: number, height: number, bpp = 32) {
    return drm.createDumb(this.fd, width, height, bpp);
  }

  /** Maps a dumb buffer (read/write) as an external ArrayBuffer; release with fd.munmap. */
  mapDumb(handle: number, size: number): ArrayBuffer {
    return fdModule.mmap(this.fd, drm.mapDumb(this.fd, handle), size, true);
  }

  destroyDumb(handle: number): void {
    drm.destroyDumb(this.fd, handle);
  }
}

/** drmGetFormatName: "XR24" for XRGB8888, "NV12", ... (printable characters of the code). */
export function formatName(format: number): string {
  return drm.formatName(format);
}

export function isDrmError(error: unknown, code: string): error is SystemError {
  return (error as Partial<SystemError> | null)?.code === code;
}
