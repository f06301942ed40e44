/**
 * wl_shm pools and buffers as the renderer sees them: a pool can only grow, and lives while its
 * wl_shm_pool or any buffer made from it exists.
 *
 * A client may truncate its pool's file at any moment. Reading a mapping past the new end of
 * the file raises SIGBUS, which kills the whole compositor; checking the size first does not help
 * (the client truncates between the check and the read). So a pool maps the file only when it is
 * sealed against shrinking (F_SEAL_SHRINK): then the mapping can never lose its pages. An
 * unsealed pool is never mapped: its buffers are read with pread(2), which returns short instead
 * of faulting, and a short read is the client's fault (wl_shm.error.invalid_fd, as libwayland's
 * wl_shm_buffer_end_access reports it). Measured on a 1080p XRGB frame (2-core machine): copying
 * out of the mapping 0.8-0.9 ms, one pread 5-8 ms, so sealed pools keep the mapping (weston's
 * and libwayland-cursor's pools are sealed) and only unsealed ones pay for pread.
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
  pread(fd: number, target: Uint8Array, position: number): number;
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
  /** The mapping of a sealed pool; always null for an unsealed one (read with pread). */
  private mapping: ArrayBuffer | null = null;
  private bytes: Uint8Array = new Uint8Array(0);
  private references = 1;
  private closed = false;
  readonly sealedAgainstShrink: boolean;
  /** Scratch for pread of strided areas (grown on demand, reused). */
  private scratch: Uint8Array = new Uint8Array(0);
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
      if (this.sealedAgainstShrink) {
        this.mapping = this.map(size);
        this.bytes = new Uint8Array(this.mapping);
      }
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
    if (this.sealedAgainstShrink) {
      const mapping = this.map(size);
      if (this.mapping) this.fdOps.munmap(this.mapping);
      this.mapping = mapping;
      this.bytes = new Uint8Array(mapping);
    }
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

  /** The mapping of a sealed pool (it cannot shrink under it); null for an unsealed pool. */
  view(): Uint8Array | null {
    return this.mapping ? this.bytes : null;
  }

  /**
   * Copies `rows` rows of `rowBytes` bytes, `stride` apart starting at pool byte `offset`, into
   * `target` (rows `targetStride` apart from `targetOffset`). False when the file no longer holds
   * them (the client truncated it): nothing faults, the caller reports the client.
   */
  readRows(
    offset: number,
    stride: number,
    rowBytes: number,
    rows: number,
    target: Uint8Array,
    targetOffset: number,
    targetStride: number,
  ): boolean {
    if (rows <= 0 || rowBytes <= 0) return true;
    if (this.closed) return false;
    const span = (rows - 1) * stride + rowBytes;
    if (this.mapping) {
      const bytes = this.bytes;
      if (offset + span > bytes.byteLength) return false;
      for (let row = 0; row < rows; row++) {
        const from = offset + row * stride;
        target.set(bytes.subarray(from, from + rowBytes), targetOffset + row * targetStride);
      }
      return true;
    }
    // Unsealed: one pread for the whole strided block (a single syscall per commit).
    if (stride === targetStride && rowBytes === stride) {
      return this.preadFully(target.subarray(targetOffset, targetOffset + span), offset);
    }
    if (this.scratch.byteLength < span) this.scratch = new Uint8Array(span);
    const block = this.scratch.subarray(0, span);
    if (!this.preadFully(block, offset)) return false;
    for (let row = 0; row < rows; row++) {
      const from = row * stride;
      target.set(block.subarray(from, from + rowBytes), targetOffset + row * targetStride);
    }
    if (this.scratch.byteLength > 64 * 1024 * 1024) this.scratch = new Uint8Array(0);
    return true;
  }

  private preadFully(target: Uint8Array, position: number): boolean {
    let done = 0;
    while (done < target.byteLength) {
      let n: number;
      try {
        n = this.fdOps.pread(this.fd, target.subarray(done), position + done);
      } catch {
        return false;
      }
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }

  /** Drops one reference; the last one unmaps and closes the fd. */
  release(): void {
    if (--this.references > 0) return;
    this.closed = true;
    if (this.mapping) this.fdOps.munmap(this.mapping);
    this.mapping = null;
    this.bytes = new Uint8Array(0);
    this.scratch = new Uint8Array(0);
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

  /** The mapping of a sealed pool; null for an unsealed one (read it with copyArea). */
  beginRead(): PlaneView[] | null {
    if (this.released) return null;
    const bytes = this.pool.view();
    return bytes ? [{ bytes, offset: this.offset, stride: this.stride }] : null;
  }

  /**
   * Copies the buffer area (already clipped) into `target`, `targetStride` bytes per row, at the
   * same coordinates. False when the client truncated the pool below it.
   */
  copyArea(
    area: { x: number; y: number; width: number; height: number },
    bytesPerPixel: number,
    target: Uint8Array,
    targetStride: number,
  ): boolean {
    if (this.released) return false;
    return this.pool.readRows(
      this.offset + area.y * this.stride + area.x * bytesPerPixel,
      this.stride,
      area.width * bytesPerPixel,
      area.height,
      target,
      area.y * targetStride + area.x * bytesPerPixel,
      targetStride,
    );
  }

  endRead(): void {}

  /** The buffer's wl_buffer is gone: drop its pool reference. Idempotent. */
  destroy(): void {
    if (this.released) return;
    this.released = true;
    this.pool.release();
  }
}
