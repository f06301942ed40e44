/** wl_shm_pool: a client's shared memory, from which wl_buffers are cut. */
import type { NativeClient } from '../../../native/index.js';
import { WlShmPoolResource, type WlShmPoolRequests } from '../../../build/protocols/wayland.js';
import { ShmProtocolError, type ShmBuffer, type ShmPool } from '../buffers/shm-pool.js';
import { wlShmToFourcc } from '../dmabuf/formats.js';
import { BufferObject } from './wl-buffer.js';

export class ShmPoolObject implements WlShmPoolRequests {
  readonly resource: WlShmPoolResource;

  /** Takes the pool's first reference; dropped when the resource goes. */
  constructor(
    client: NativeClient,
    version: number,
    id: number,
    private readonly pool: ShmPool,
  ) {
    try {
      this.resource = WlShmPoolResource.create(client, version, id, this);
    } catch (error) {
      pool.release();
      throw error;
    }
    this.resource.onDestroy(() => pool.release());
  }

  createBuffer(
    resource: WlShmPoolResource,
    id: number,
    offset: number,
    width: number,
    height: number,
    stride: number,
    format: number,
  ): void {
    let buffer: ShmBuffer;
    try {
      buffer = this.pool.createBuffer(offset, width, height, stride, wlShmToFourcc(format));
    } catch (error) {
      if (!(error instanceof ShmProtocolError)) throw error;
      resource.postError(error.code, error.message);
      return;
    }
    new BufferObject(resource.client, id, {
      render: buffer,
      copyOnCommit: true,
      destroy: () => buffer.destroy(),
    });
  }

  resize(resource: WlShmPoolResource, size: number): void {
    try {
      this.pool.resize(size);
    } catch (error) {
      if (!(error instanceof ShmProtocolError)) throw error;
      resource.postError(error.code, error.message);
    }
  }
}
