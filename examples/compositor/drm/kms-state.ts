/**
 * The KMS state found at start (every CRTC, connector and plane property a commit may set), and
 * the atomic commit that puts it back on close. Blob properties (MODE_ID, gamma) are saved by
 * content: the blob the kernel had may be gone once our own mode replaced it.
 */
import {
  AtomicFlag,
  AtomicRequest,
  ObjectType,
  PropertyFlag,
  type DrmDevice,
  type PropertyMap,
} from '../../../native/drm.js';

/** Properties that are requests, not state (or legacy-only, like DPMS, which atomic commits
 * refuse): never saved or restored. */
const TRANSIENT = new Set([
  'DPMS',
  'IN_FENCE_FD',
  'OUT_FENCE_PTR',
  'WRITEBACK_FB_ID',
  'WRITEBACK_OUT_FENCE_PTR',
  'FB_DAMAGE_CLIPS',
]);

export interface SavedProperty {
  name: string;
  id: number;
  value: bigint;
  /** Blob properties: the blob's bytes (null for "no blob"). */
  blob?: Uint8Array | null;
}

export interface SavedObject {
  id: number;
  kind: 'crtc' | 'connector' | 'plane';
  properties: SavedProperty[];
}

export type SavedKmsState = SavedObject[];

function saveProperties(device: DrmDevice, properties: PropertyMap): SavedProperty[] {
  const saved: SavedProperty[] = [];
  for (const property of properties.values()) {
    if ((property.flags & PropertyFlag.IMMUTABLE) !== 0 || TRANSIENT.has(property.name)) continue;
    if ((property.flags & PropertyFlag.BLOB) !== 0) {
      saved.push({
        name: property.name,
        id: property.id,
        value: property.value,
        blob: property.value === 0n ? null : device.blob(Number(property.value)),
      });
    } else {
      saved.push({ name: property.name, id: property.id, value: property.value });
    }
  }
  return saved;
}

/** Reads the state of every CRTC, connector and plane (the device must have atomic enabled). */
export function saveKmsState(device: DrmDevice): SavedKmsState {
  const resources = device.resources();
  const state: SavedKmsState = [];
  for (const id of resources.crtcs) {
    state.push({
      id,
      kind: 'crtc',
      properties: saveProperties(device, device.properties(id, ObjectType.CRTC)),
    });
  }
  for (const id of resources.connectors) {
    state.push({
      id,
      kind: 'connector',
      properties: saveProperties(device, device.properties(id, ObjectType.CONNECTOR)),
    });
  }
  for (const plane of device.planes()) {
    state.push({
      id: plane.id,
      kind: 'plane',
      properties: saveProperties(device, plane.properties),
    });
  }
  return state;
}

/**
 * Puts the saved state back with one blocking ALLOW_MODESET commit. Blobs are recreated from
 * their bytes and destroyed after the commit (the objects keep their own references).
 */
export function restoreKmsState(device: DrmDevice, state: SavedKmsState): void {
  const request = new AtomicRequest();
  const blobs: number[] = [];
  try {
    for (const object of state) {
      for (const property of object.properties) {
        if (property.blob !== undefined) {
          let value = 0;
          if (property.blob !== null) {
            value = device.createBlob(property.blob);
            blobs.push(value);
          }
          request.add(object.id, property.id, value);
        } else {
          request.add(object.id, property.id, property.value);
        }
      }
    }
    device.commit(request, AtomicFlag.ALLOW_MODESET);
  } finally {
    for (const blob of blobs) device.destroyBlob(blob);
  }
}

/** A comparable snapshot: property values by object, with blobs as hex of their bytes. */
export function describeKmsState(state: SavedKmsState): Record<string, string> {
  const out: Record<string, string> = {};
  for (const object of state) {
    for (const property of object.properties) {
      out[`${object.kind} ${object.id} ${property.name}`] =
        property.blob === undefined
          ? property.value.toString()
          : property.blob === null
            ? 'no blob'
            : Buffer.from(property.blob).toString('hex');
    }
  }
  return out;
}
