/** wl_shm: advertises the formats the renderer reads and creates pools. */
import { WlShmResource, type WlShmFormat } from '../../../build/protocols/wayland.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import { ShmPool, ShmProtocolError } from '../buffers/shm-pool.js';
import { formatInfo, fourccToWlShm } from '../dmabuf/formats.js';
import type { ServerContext } from './context.js';
import { ShmPoolObject } from './wl-shm-pool.js';

export const WL_SHM_VERSION = 1;

/** Single-plane formats only: wl_shm buffers have one plane. */
export function shmFormats(): number[] {
  return [...formatInfo.values()]
    .filter((info) => info.planes.length === 1)
    .map((info) => fourccToWlShm(info.format));
}

export function createShmGlobal(context: ServerContext): Global {
  return WlShmResource.global(context.display, WL_SHM_VERSION, (resource) => {
    context.noteClient(resource.client);
    for (const format of shmFormats()) resource.sendFormat(format as WlShmFormat);
    return {
      createPool(shm, id, poolFd, size) {
        let pool: ShmPool;
        try {
          pool = new ShmPool(poolFd, size, context.fd); // takes poolFd
        } catch (error) {
          if (!(error instanceof ShmProtocolError)) throw error;
          shm.postError(error.code, error.message);
          return;
        }
        new ShmPoolObject(shm.client, shm.version, id, pool);
      },
    };
  });
}
