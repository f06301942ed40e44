/**
 * A linux-dmabuf buffer as the renderer sees it: each plane's fd is mapped read-only on first
 * use, and every read is bracketed by DMA_BUF_IOCTL_SYNC START/END. A memfd has no sync ioctl
 * (ENOTTY), which is fine: there is no device cache to coordinate with.
 *
 * A memfd plane that is not sealed against shrinking is never mapped: its owner could truncate it
 * while the renderer reads the mapping, and that read would raise SIGBUS in the compositor. Such a
 * plane is read with pread(2) into a private copy at each beginRead (a real dma-buf never
 * shrinks, and a sealed memfd cannot); a short read reports the client (`onUnreadable`).
 *
 * Fd ownership: takes the attributes' plane fds; destroy() unmaps and closes them.
 */
import { DmaBufSync, Seal } from '../../../native/fd.js';
import type { DmabufAttributes } from '../dmabuf/params.js';
import { ParamsFlags } from '../dmabuf/params.js';
import { formatInfo, planeExtent } from '../dmabuf/formats.js';
import type { RenderBuffer } from '../render/compose.js';
import type { PlaneView } from '../render/pixels.js';

export interface DmabufFdOps {
  fdSize(fd: number): number;
  getSeals(fd: number): number;
  pread(fd: number, target: Uint8Array, position: number): number;
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  munmap(buffer: ArrayBuffer): void;
  dmabufSync(fd: number, flags: number): void;
  close(fd: number): void;
}

interface MappedPlane {
  fd: number;
  offset: number;
  stride: number;
  mapping: ArrayBuffer | null;
  bytes: Uint8Array;
  /** Bytes the renderer may touch: offset + stride * rows. */
  end: number;
  /** File offset of the mapping (the plane offset rounded down to MAP_ALIGNMENT). */
  mapStart: number;
  /** Whether DMA_BUF_IOCTL_SYNC applies (false after ENOTTY). */
  sync: boolean;
  /** A memfd that may still shrink: read with pread into `bytes`, never mapped. */
  mayShrink: boolean;
}

/** mmap offsets must be page aligned; 64 KiB covers every Linux page size in use. */
const MAP_ALIGNMENT = 65536;

function planeRows(attributes: DmabufAttributes, index: number): number {
  const layout = formatInfo.get(attributes.format)?.planes[index];
  return planeExtent(attributes.height, layout?.verticalSubsampling ?? 1);
}

/** True when fd knows DMA_BUF_IOCTL_SYNC (a real dma-buf); ENOTTY means any other file. */
function isDmabuf(fd: number, fdOps: DmabufFdOps): boolean {
  try {
    fdOps.dmabufSync(fd, DmaBufSync.START | DmaBufSync.READ);
    fdOps.dmabufSync(fd, DmaBufSync.END | DmaBufSync.READ);
    return true;
  } catch (error) {
    return (error as { code?: string }).code !== 'ENOTTY';
  }
}

export class DmabufBuffer implements RenderBuffer {
  readonly width: number;
  readonly height: number;
  readonly format: number;
  readonly modifier: bigint;
  readonly yInvert: boolean;
  private readonly planes: MappedPlane[];
  private destroyed = false;
  private syncing: MappedPlane[] = [];
  /** The last failure to read, for logs. */
  lastError: string | null = null;
  /** Called when the client made the buffer unreadable (truncated a memfd plane). */
  onUnreadable: ((message: string) => void) | null = null;

  /** The planes' fds (borrowed: the buffer owns them), offsets and strides, for KMS import. */
  get planeDescriptors(): readonly { fd: number; offset: number; stride: number }[] {
    return this.planes;
  }

  constructor(
    attributes: DmabufAttributes,
    private readonly fdOps: DmabufFdOps,
  ) {
    this.width = attributes.width;
    this.height = attributes.height;
    this.format = attributes.format;
    this.modifier = attributes.modifier;
    this.yInvert = (attributes.flags & ParamsFlags.Y_INVERT) !== 0;
    this.planes = attributes.planes.splice(0).map((plane, index) => {
      let mayShrink: boolean;
      try {
        mayShrink = (fdOps.getSeals(plane.fd) & Seal.SHRINK) === 0;
      } catch {
        mayShrink = !isDmabuf(plane.fd, fdOps); // a dma-buf's size is fixed; a plain file's is not
      }
      return {
        ...plane,
        mapping: null,
        bytes: new Uint8Array(0),
        end: plane.offset + plane.stride * planeRows(attributes, index),
        mapStart: 0,
        sync: true,
        mayShrink,
      };
    });
  }

  private mapPlane(plane: MappedPlane): boolean {
    if (plane.mayShrink) return this.readPlane(plane);
    if (plane.mapping) return true;
    const size = this.fdOps.fdSize(plane.fd);
    if (size < plane.end) throw new Error(`plane shrank to ${size} bytes`);
    // Map only the plane's span: the fd may be far larger (a whole guest memfd, say).
    plane.mapStart = Math.floor(plane.offset / MAP_ALIGNMENT) * MAP_ALIGNMENT;
    plane.mapping = this.fdOps.mmap(plane.fd, plane.mapStart, plane.end - plane.mapStart, false);
    plane.bytes = new Uint8Array(plane.mapping);
    return true;
  }

  /** pread of an unsealed memfd plane into its private copy; throws when it came up short. */
  private readPlane(plane: MappedPlane): boolean {
    const length = plane.end - plane.offset;
    if (plane.bytes.byteLength !== length) plane.bytes = new Uint8Array(length);
    plane.mapStart = plane.offset;
    let done = 0;
    while (done < length) {
      const n = this.fdOps.pread(plane.fd, plane.bytes.subarray(done), plane.offset + done);
      if (n <= 0) {
        const message = `memfd plane holds ${plane.offset + done} of the ${plane.end} bytes it needs`;
        this.onUnreadable?.(message);
        throw new Error(message);
      }
      done += n;
    }
    return true;
  }

  beginRead(): PlaneView[] | null {
    if (this.destroyed) return null;
    this.syncing = [];
    try {
      for (const plane of this.planes) this.mapPlane(plane);
      for (const plane of this.planes) {
        if (!plane.sync || plane.mayShrink) continue;
        try {
          this.fdOps.dmabufSync(plane.fd, DmaBufSync.START | DmaBufSync.READ);
          this.syncing.push(plane);
        } catch (error) {
          if ((error as { code?: string }).code !== 'ENOTTY') throw error;
          plane.sync = false;
        }
      }
    } catch (error) {
      this.lastError = String(error);
      this.endRead();
      return null;
    }
    return this.planes.map((plane) => ({
      bytes: plane.bytes,
      offset: plane.offset - plane.mapStart,
      stride: plane.stride,
    }));
  }

  endRead(): void {
    for (const plane of this.syncing.splice(0)) {
      try {
        this.fdOps.dmabufSync(plane.fd, DmaBufSync.END | DmaBufSync.READ);
      } catch (error) {
        this.lastError = String(error);
      }
    }
  }

  /** Unmaps and closes every plane. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.endRead();
    for (const plane of this.planes.splice(0)) {
      if (plane.mapping) this.fdOps.munmap(plane.mapping);
      plane.mapping = null;
      this.fdOps.close(plane.fd);
    }
  }
}
