/**
 * wl_buffers for guest framebuffers, one class per path:
 *
 *   DmabufBuffer      zwp_linux_buffer_params_v1 on a dma-buf of the guest pages (no copy)
 *   ShmDirectBuffer   a wl_shm pool on the guest memfd itself (no copy)
 *   ShmCopyBuffer     a private wl_shm buffer; damaged rects are copied in before each commit
 *
 * `prepare(damage)` runs right before a commit and returns the bytes it copied (0 for the first
 * two). Fds passed to requests are borrowed (libwayland dups them).
 */
import { fd } from '../../native/fd.js';
import type {
  WlBufferProxy,
  WlShmProxy,
  ZwpLinuxDmabufV1Proxy,
} from '../../build/protocols/index.js';
import { DamageCopier, type CopyPlan } from './copy.js';
import type { DamageAccumulator } from './damage.js';
import { modifierHi, modifierLo } from '../common/formats.js';
import type { GuestBuffer } from './plan.js';
import type { PresentPath } from '../stats.js';

export interface PresentedBuffer {
  readonly path: PresentPath;
  readonly wlBuffer: WlBufferProxy;
  readonly width: number;
  readonly height: number;
  /** False from attach+commit until the compositor sends wl_buffer.release. */
  readonly released: boolean;
  /** How many times the compositor released it (tests use it to see the flow completed). */
  readonly releases: number;
  /** Makes the buffer's content current for the damaged rects; returns bytes copied. */
  prepare(damage: DamageAccumulator): number;
  /** Marks the buffer busy (it was just committed). */
  markCommitted(): void;
  destroy(): void;
}

abstract class BufferBase implements PresentedBuffer {
  abstract readonly path: PresentPath;
  released = true;
  releases = 0;
  private destroyed = false;

  constructor(
    readonly wlBuffer: WlBufferProxy,
    readonly width: number,
    readonly height: number,
  ) {
    wlBuffer.setListener({
      release: () => {
        this.released = true;
        this.releases++;
      },
    });
  }

  prepare(_damage: DamageAccumulator): number {
    return 0;
  }

  markCommitted(): void {
    this.released = false;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.wlBuffer.alive) this.wlBuffer.destroy();
    this.release();
  }

  /** Frees what the subclass holds besides the wl_buffer. */
  protected release(): void {}
}

/** Zero-copy: the guest pages as a dma-buf. */
export class DmabufBuffer extends BufferBase {
  readonly path = 'dmabuf' as const;

  /**
   * Borrows `dmabufFd` (the exporter keeps it). Uses create_immed: a failure is a protocol error,
   * so callers check format, modifier and geometry against what was advertised first.
   */
  static create(
    dmabuf: ZwpLinuxDmabufV1Proxy,
    dmabufFd: number,
    buffer: GuestBuffer,
    modifier: bigint,
    onDestroy: () => void,
  ): DmabufBuffer {
    const params = dmabuf.createParams();
    params.add(
      dmabufFd,
      0,
      buffer.offset,
      buffer.stride,
      modifierHi(modifier),
      modifierLo(modifier),
    );
    const wlBuffer = params.createImmed(buffer.width, buffer.height, buffer.format, 0);
    params.destroy();
    return new DmabufBuffer(wlBuffer, buffer.width, buffer.height, onDestroy);
  }

  private constructor(
    wlBuffer: WlBufferProxy,
    width: number,
    height: number,
    private readonly onDestroy: () => void,
  ) {
    super(wlBuffer, width, height);
  }

  protected override release(): void {
    this.onDestroy();
  }
}

/** Zero-copy fallback: a wl_shm pool on the guest memfd (borrowed; the compositor maps a dup). */
export class ShmDirectBuffer extends BufferBase {
  readonly path = 'shm-direct' as const;

  static create(
    shm: WlShmProxy,
    memfd: number,
    poolSize: number,
    bufferOffset: number,
    buffer: GuestBuffer,
    shmFormat: number,
  ): ShmDirectBuffer {
    const pool = shm.createPool(memfd, poolSize);
    const wlBuffer = pool.createBuffer(
      bufferOffset,
      buffer.width,
      buffer.height,
      buffer.stride,
      shmFormat as never,
    );
    pool.destroy();
    return new ShmDirectBuffer(wlBuffer, buffer.width, buffer.height);
  }
}

/** The copying fallback: a private shm buffer that damaged rects are copied into. */
export class ShmCopyBuffer extends BufferBase {
  readonly path = 'shm-copy' as const;

  /**
   * Maps what `plan` (default: planCopyMappings of `buffer`) says and makes the shm buffer. The shm memfd
   * is closed before returning (the pool and the mapping keep its pages). `onDestroy` runs once,
   * after the mappings are gone.
   */
  static create(
    shm: WlShmProxy,
    buffer: GuestBuffer,
    shmFormat: number,
    bytesPerPixel: number,
    plan?: CopyPlan,
    onDestroy: (buffer: ShmCopyBuffer) => void = () => undefined,
  ): ShmCopyBuffer {
    const copier = new DamageCopier(buffer, bytesPerPixel, plan);
    let memfd = -1;
    let mapping: ArrayBuffer | null = null;
    try {
      memfd = fd.memfdCreate('guestfb-shm-copy', false);
      fd.ftruncate(memfd, copier.targetSize);
      mapping = fd.mmap(memfd, 0, copier.targetSize, true);
      const pool = shm.createPool(memfd, copier.targetSize);
      const wlBuffer = pool.createBuffer(
        0,
        buffer.width,
        buffer.height,
        copier.targetStride,
        shmFormat as never,
      );
      pool.destroy();
      return new ShmCopyBuffer(wlBuffer, buffer.width, buffer.height, copier, mapping, onDestroy);
    } catch (error) {
      copier.close();
      if (mapping) fd.munmap(mapping);
      throw error;
    } finally {
      // The pool holds its own reference; our mapping stays valid without the fd.
      if (memfd >= 0) fd.close(memfd);
    }
  }

  private readonly target: Buffer;

  private constructor(
    wlBuffer: WlBufferProxy,
    width: number,
    height: number,
    private readonly copier: DamageCopier,
    private readonly mapping: ArrayBuffer,
    private readonly onDestroy: (buffer: ShmCopyBuffer) => void,
  ) {
    super(wlBuffer, width, height);
    this.target = Buffer.from(mapping);
  }

  /** Bytes of the packed copy (the shm buffer). */
  get targetSize(): number {
    return this.copier.targetSize;
  }

  /** Mappings of guest memory the copier holds (0 once destroyed). */
  get mappingCount(): number {
    return this.copier.mappingCount;
  }

  override prepare(damage: DamageAccumulator): number {
    let copied = 0;
    for (let i = 0; i < damage.count; i++) {
      copied += this.copier.copyRect(
        this.target,
        damage.x(i),
        damage.y(i),
        damage.rectWidth(i),
        damage.rectHeight(i),
      );
    }
    return copied;
  }

  protected override release(): void {
    this.copier.close();
    fd.munmap(this.mapping);
    this.onDestroy(this);
  }
}
