/**
 * Dumb buffers with a framebuffer on them, mapped for CPU writes: the backend's composed frames,
 * the cursor plane's images and the writeback target. Whoever creates one frees it with
 * destroyDumbFramebuffer.
 */
import { fd } from '../../../native/fd.js';
import type { DrmDevice } from '../../../native/drm.js';

export interface DumbFramebuffer {
  handle: number;
  pitch: number;
  size: number;
  map: ArrayBuffer;
  fbId: number;
}

/** A 32-bit dumb buffer of `width` × `height` in `format`, mapped, with its framebuffer. */
export function createDumbFramebuffer(
  device: DrmDevice,
  width: number,
  height: number,
  format: number,
): DumbFramebuffer {
  const dumb = device.createDumb(width, height, 32);
  let map: ArrayBuffer | null = null;
  try {
    map = device.mapDumb(dumb.handle, dumb.size);
    const fbId = device.addFramebuffer({
      width,
      height,
      format,
      handles: [dumb.handle],
      pitches: [dumb.pitch],
      offsets: [0],
    });
    return { ...dumb, map, fbId };
  } catch (error) {
    if (map) fd.munmap(map);
    device.destroyDumb(dumb.handle);
    throw error;
  }
}

/** Unmaps, removes the framebuffer and destroys the buffer; logs (does not throw) a failure. */
export function destroyDumbFramebuffer(
  device: DrmDevice,
  buffer: DumbFramebuffer,
  log: (message: string) => void,
): void {
  try {
    fd.munmap(buffer.map);
    device.removeFramebuffer(buffer.fbId);
    device.destroyDumb(buffer.handle);
  } catch (error) {
    log(
      `drm: freeing a dumb buffer failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
