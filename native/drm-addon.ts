/**
 * The raw DRM/KMS calls of the addon (native/src/drm.cc) as typed declarations, and the kernel's
 * constants guestfb uses. native/drm.ts re-exports all of it; DrmDevice there is the typed layer.
 */
import { native } from './index.js';

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
