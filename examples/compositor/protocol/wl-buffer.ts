/**
 * wl_buffer, for both wl_shm and linux-dmabuf buffers: the ClientBuffer a surface holds. The
 * buffer's memory (pool reference or dma-buf fds) is let go when the wl_buffer is destroyed, by
 * request or because its client went away.
 */
import type { NativeClient } from '../../../native/index.js';
import { WlBufferResource, type WlBufferRequests } from '../../../build/protocols/wayland.js';
import type { ClientBuffer } from '../core/surface.js';
import type { RenderBuffer } from '../render/compose.js';

/** The memory behind a wl_buffer. */
export interface BufferStorage {
  readonly render: RenderBuffer;
  readonly copyOnCommit: boolean;
  destroy(): void;
  /** Hands the storage the function that reports its client for memory it made unreadable. */
  watchUnreadable?(report: (message: string) => void): void;
}

/** wl_shm.error.invalid_fd: libwayland's wl_shm_buffer_end_access posts it on the wl_buffer when
 * the client truncated the pool under a read; the same stands for a truncated memfd dma-buf. */
const INVALID_FD = 2;

export class BufferObject implements WlBufferRequests, ClientBuffer {
  readonly resource: WlBufferResource;

  /** `id` 0 creates a server-allocated object (for zwp_linux_buffer_params_v1.created). */
  constructor(
    client: NativeClient,
    id: number,
    private readonly storage: BufferStorage,
  ) {
    try {
      this.resource = WlBufferResource.create(client, 1, id, this);
    } catch (error) {
      storage.destroy();
      throw error;
    }
    this.resource.onDestroy(() => storage.destroy());
    storage.watchUnreadable?.((message) => this.unreadable(message));
  }

  private reported = false;

  /** The client made the buffer's memory unreadable (truncated it): a protocol error, once. */
  unreadable(message: string): void {
    if (this.reported || !this.resource.alive) return;
    this.reported = true;
    this.resource.postError(INVALID_FD, `error accessing the buffer's memory: ${message}`);
  }

  static from(resource: WlBufferResource | null): BufferObject | null {
    const handlers = resource?.handlers;
    return handlers instanceof BufferObject ? handlers : null;
  }

  get render(): RenderBuffer {
    return this.storage.render;
  }

  get copyOnCommit(): boolean {
    return this.storage.copyOnCommit;
  }

  get alive(): boolean {
    return this.resource.alive;
  }

  release(): void {
    this.resource.sendRelease();
  }

  /** wl_buffer.destroy: the resource's destroy listener lets the storage go. */
  destroy(): void {}
}
