/**
 * guestfb's own DRM/KMS binding (the npm registry has no maintained `node-drm`): the raw native
 * calls (native/src/drm.cc), decoders for the kernel's binary structures (mode infos, IN_FORMATS
 * blobs, events), and DrmDevice, a small typed layer with properties by name and atomic commits.
 *
 * Ownership: DrmDevice owns its device fd. GEM handles, framebuffers, property blobs and dumb
 * buffers belong to the device fd too (the kernel drops them when it closes); the methods that
 * create them have a matching method that releases them. Fds passed in are borrowed; fence fds
 * returned by commit() are owned by the caller.
 *
 * This file is DrmDevice and the typed objects; the raw calls and constants are in
 * drm-addon.ts, the decoders in drm-decode.ts (both re-exported here).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { SystemError } from './index.js';
import { fd as fdModule } from './fd.js';

import {
  CONNECTOR_TYPE_WRITEBACK,
  ClientCap,
  type FramebufferSpec,
  ObjectType,
  type OutFenceRequest,
  PropertyFlag,
  type RawResources,
  connectorTypeName,
  drm,
} from './drm-addon.js';
import {
  type DrmEvent,
  type FormatModifier,
  type ModeInfo,
  decodeDrmEvents,
  decodeInFormats,
  decodeModeInfo,
  decodeModeInfos,
  encodeModeInfo,
} from './drm-decode.js';

export * from './drm-addon.js';
export * from './drm-decode.js';

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
