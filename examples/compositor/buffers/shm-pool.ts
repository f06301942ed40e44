/**
 * wl_shm pools and buffers as the renderer sees them: a pool maps the client's fd read-only, can
 * only grow, and lives while its wl_shm_pool or any buffer made from it exists.
 *
 * Fd ownership: the pool takes the client's fd and closes it when the last reference goes.
 */
import { Seal } from '../../../native/fd.js';
import { formatInfo } from '../dmabuf/formats.js';
import type { RenderBuffer } from '../render/compose.js';
import type { PlaneView } from '../render/pixels.js';

/** wl_shm.error */
export const ShmError = {
  INVALID_FORMAT: 0,
  INVALID_STRIDE: 1,
  INVALID_FD: 2,
} as const;

export interface ShmFdOps {
  fdSize(fd: number): number;
  getSeals(fd: number): number;
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  munmap(buffer: ArrayBuffer): void;
  close(fd: number): void;
}

export class ShmProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Largest pool we map: bounded so offset arithmetic stays exact in doubles. */
const MAX_POOL_SIZE = 2 ** 31 - 1;

export class ShmPool {
  private mapping: ArrayBuffer | null;
  private bytes: Uint8Array;
  private references = 1;
  private readonly sealedAgainstShrink: boolean;
  size: number;

  /** Takes `fd` (closed here on failure too). Throws ShmProtocolError. */
  constructor(
    private readonly fd: number,
    size: number,
    private readonly fdOps: ShmFdOps,
  ) {
    try {
      if (!Number.isInteger(size) || size <= 0 || size > MAX_POOL_SIZE) {
        throw new ShmProtocolError(ShmError.INVALID_STRIDE, `invalid pool size ${size}`);
      }
      let fileSize: number;
      try {
        fileSize = fdOps.fdSize(fd);
      } catch (error) {
        throw new ShmProtocolError(ShmError.INVALID_FD, `pool fd has no size: ${String(error)}`);
      }
      if (fileSize < size) {
        throw new ShmProtocolError(
          ShmError.INVALID_FD,
          `pool size ${size} is past the file's ${fileSize} bytes`,
        );
      }
      let seals = 0;
      try {
        seals = fdOps.getSeals(fd);
      } catch {
        seals = 0; // not a memfd: no seals, size is rechecked on each read
      }
      this.sealedAgainstShrink = (seals & Seal.SHRINK) !== 0;
      this.mapping = this.map(size);
      this.bytes = new Uint8Array(this.mapping);
      this.size = size;
    } catch (error) {
      fdOps.close(fd);
      throw error;
    }
  }

  private map(size: number): ArrayBuffer {
    try {
      return this.fdOps.mmap(this.fd, 0, size, false);
    } catch (error) {
      throw new ShmProtocolError(ShmError.INVALID_FD, `mmap of the pool failed: ${String(error)}`);
    }
  }

  /** wl_shm_pool.resize: pools only grow. Throws ShmProtocolError. */
  resize(size: number): void {
    if (!Number.isInteger(size) || size < this.size || size > MAX_POOL_SIZE) {
      throw new ShmProtocolError(
        ShmError.INVALID_STRIDE,
        `pool can only grow (from ${this.size} to ${size})`,
      );
    }
    if (size === this.size) return;
    let fileSize: number;
    try {
      fileSize = this.fdOps.fdSize(this.fd);
    } catch (error) {
      throw new ShmProtocolError(ShmError.INVALID_FD, `pool fd has no size: ${String(error)}`);
    }
    if (fileSize < size) {
      throw new ShmProtocolError(
        ShmError.INVALID_FD,
        `resize to ${size} past the file's ${fileSize}`,
      );
    }
    const mapping = this.map(size);
    if (this.mapping) this.fdOps.munmap(this.mapping);
    this.mapping = mapping;
    this.bytes = new Uint8Array(mapping);
    this.size = size;
  }

  /** wl_shm_pool.create_buffer's checks. Throws ShmProtocolError. */
  createBuffer(
    offset: number,
    width: number,
    height: number,
    stride: number,
    format: number,
  ): ShmBuffer {
    const info = formatInfo.get(format);
    if (!info || info.planes.length !== 1) {
      throw new ShmProtocolError(
        ShmError.INVALID_FORMAT,
        `unsupported format 0x${format.toString(16)}`,
      );
    }
    const rowBytes = BigInt(width) * BigInt(info.planes[0].bytesPerPixel);
    if (
      width <= 0 ||
      height <= 0 ||
      offset < 0 ||
      stride <= 0 ||
      BigInt(stride) < rowBytes ||
      BigInt(offset) + BigInt(stride) * BigInt(height) > BigInt(this.size)
    ) {
      throw new ShmProtocolError(
        ShmError.INVALID_STRIDE,
        `invalid buffer: offset ${offset}, ${width}x${height}, stride ${stride}, pool ${this.size}`,
      );
    }
    this.references++;
    return new ShmBuffer(this, offset, width, height, stride, format);
  }

  /** The current mapping, or null when the file shrank below what `end` needs (a client that
   * truncates its pool would otherwise crash us with SIGBUS). */
  view(end: number): Uint8Array | null {
    if (!this.mapping) return null;
    if (!this.sealedAgainstShrink) {
      try {
        if (this.fdOps.fdSize(this.fd) < end) return null;
      } catch {
        return null;
      }
    }
    return this.bytes;
  }

  /** Drops one reference; the last one unmaps and closes the fd. */
  release(): void {
    if (--this.references > 0) return;
    if (this.mapping) this.fdOps.munmap(this.mapping);
    this.mapping = null;
    this.bytes = new Uint8Array(0);
    this.fdOps.close(this.fd);
  }
}

export class ShmBuffer implements RenderBuffer {
  private released = false;

  constructor(
    private readonly pool: ShmPool,
    readonly offset: number,
    readonly width: number,
    readonly height: number,
    readonly stride: number,
    readonly format: number,
  ) {}

  beginRead(): PlaneView[] | null {
    if (this.released) return null;
    const bytes = this.pool.view(this.offset + this.stride * this.height);
    return bytes ? [{ bytes, offset: this.offset, stride: this.stride }] : null;
  }

  endRead(): void {}

  /** The buffer's wl_buffer is gone: drop its pool reference. Idempotent. */
  destroy(): void {
    if (this.released) return;
    this.released = true;
    this.pool.release();
  }
}
