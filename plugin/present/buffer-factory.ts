/**
 * Where guest buffers become wl_buffers: the one place a dma-buf is created (through the udmabuf
 * exporter) and released. `create` validates the buffer, asks plan.ts for the path (dma-buf, else
 * wl_shm on the guest memfd, else a counted copy) and makes the wl_buffer; each refusal and each
 * fallback reason is logged once.
 *
 * Keys: the exporter caches one dma-buf per key (a resource of one source) and generation (its
 * backing); the caller releases a key when the backing changes or the resource goes away.
 */
import { fd } from '../../native/fd.js';
import { UdmabufExporter, isUdmabufError } from '../dmabuf/index.js';
import { fourccName } from '../common/formats.js';
import type { Logger } from '../common/log.js';
import type { PluginStats } from '../stats.js';
import { DmabufBuffer, ShmCopyBuffer, ShmDirectBuffer, type PresentedBuffer } from './buffers.js';
import type { CopyBudget, CopyOwner } from './copy-budget.js';
import { planCopyMappings } from './copy.js';
import type { PresentGlobals } from './globals.js';
import {
  backingBeyondFds,
  planDmabuf,
  planShm,
  validateGuestBuffer,
  type GuestBuffer,
  type ShmPolicy,
} from './plan.js';

/**
 * Where a copy buffer is accounted: the device's budget (which may evict older copy buffers to
 * admit it, or refuse it), and how the budget reaches the buffer's owner once it is made.
 */
export interface CopyAccounting {
  budget: CopyBudget;
  ownerFor(buffer: PresentedBuffer): CopyOwner;
}

/**
 * udmabuf: a device path to open, false to never use it (forces the wl_shm fallback), or an
 * exporter to use (the factory then does not dispose it).
 */
export type UdmabufChoice = string | false | UdmabufExporter;

/** How many distinct refusal messages are remembered before the memory starts over. */
const LOGGED_REFUSALS_LIMIT = 256;

export class BufferFactory {
  private exporter: UdmabufExporter | null = null;
  private readonly ownsExporter: boolean;
  /** Why udmabuf cannot be used at all on this host, or null. */
  readonly udmabufRefusal: string | null;
  private readonly loggedRefusals = new Set<string>();

  constructor(
    private readonly globals: PresentGlobals,
    private readonly stats: PluginStats,
    private readonly log: Logger,
    udmabuf: UdmabufChoice = '/dev/udmabuf',
    private readonly shmPolicy: ShmPolicy = {},
  ) {
    if (udmabuf === false) {
      this.udmabufRefusal = 'udmabuf disabled by the caller';
      this.ownsExporter = false;
    } else if (udmabuf instanceof UdmabufExporter) {
      this.exporter = udmabuf;
      this.ownsExporter = false;
      this.udmabufRefusal = null;
    } else {
      this.ownsExporter = true;
      let refusal: string | null = null;
      try {
        this.exporter = UdmabufExporter.open({ devicePath: udmabuf });
      } catch (error) {
        refusal = isUdmabufError(error) ? error.message : String(error);
      }
      this.udmabufRefusal = refusal;
    }
  }

  /**
   * Makes a wl_buffer for `buffer` on the best path; null (logged) when impossible. On the
   * dma-buf path this is where the dma-buf of `key` at `generation` is created (or taken from
   * the exporter's cache). `guest` names the guest in log lines. A copy buffer is admitted by
   * `copies` (without it, it is made unaccounted: tests).
   */
  create(
    guest: string,
    key: number,
    generation: number,
    buffer: GuestBuffer,
    copies?: CopyAccounting,
  ): PresentedBuffer | null {
    let invalid = validateGuestBuffer(buffer);
    if (!invalid) {
      try {
        invalid = backingBeyondFds(buffer.ranges, (memfd) => fd.fdSize(memfd));
      } catch (error) {
        invalid = `cannot size its backing: ${(error as Error).message}`;
      }
    }
    if (invalid) {
      this.logRefusal(`${guest}: cannot show a ${fourccName(buffer.format)} buffer: ${invalid}`);
      return null;
    }
    const dmabufPlan = planDmabuf(buffer, this.globals.dmabufFormats, this.udmabufRefusal);
    let reason: string;
    if (dmabufPlan.path === 'dmabuf' && this.exporter && this.globals.dmabuf) {
      const needed = buffer.offset + buffer.stride * buffer.height;
      try {
        const exported = this.exporter.acquire(key, generation, buffer.ranges);
        this.stats.dmabufsLive = this.exporter.cachedCount;
        if (needed > exported.size) {
          reason = `the backing (${exported.size} bytes) is shorter than offset + stride × height (${needed})`;
        } else {
          return DmabufBuffer.create(
            this.globals.dmabuf,
            exported.fd,
            buffer,
            dmabufPlan.modifier,
            () => undefined,
          );
        }
      } catch (error) {
        if (!isUdmabufError(error)) throw error;
        reason = `udmabuf refused: ${error.message}`;
      }
    } else {
      reason = dmabufPlan.path === 'refused' ? dmabufPlan.reason : 'udmabuf unavailable';
    }
    if (!this.globals.shm) {
      this.logRefusal(
        `${guest}: cannot show the buffer: ${reason}; and the compositor has no wl_shm`,
      );
      return null;
    }
    const shmPlan = planShm(buffer, reason, this.globals.shmFormats, this.shmPolicy);
    switch (shmPlan.path) {
      case 'unpresentable':
        this.logRefusal(`${guest}: cannot show the buffer: ${shmPlan.reason}`);
        return null;
      case 'shm-direct':
        this.noteFallback(guest, shmPlan.reason);
        return ShmDirectBuffer.create(
          this.globals.shm,
          shmPlan.memfd,
          shmPlan.poolSize,
          shmPlan.bufferOffset,
          buffer,
          shmPlan.shmFormat,
        );
      case 'shm-copy': {
        this.noteFallback(guest, shmPlan.reason);
        const plan = planCopyMappings(buffer, shmPlan.bytesPerPixel);
        const bytes = buffer.width * shmPlan.bytesPerPixel * buffer.height;
        const refusal = copies?.budget.admit(bytes, plan.mappings.length) ?? null;
        if (refusal !== null) {
          this.logRefusal(`${guest}: cannot show the buffer by copying: ${refusal}`);
          return null;
        }
        const made = ShmCopyBuffer.create(
          this.globals.shm,
          buffer,
          shmPlan.shmFormat,
          shmPlan.bytesPerPixel,
          plan,
          (destroyed) => copies?.budget.untrack(destroyed),
        );
        copies?.budget.track(made, bytes, made.mappingCount, copies.ownerFor(made));
        return made;
      }
    }
  }

  /** Drops the dma-buf of `key` (its backing changed or its resource is gone). */
  release(key: number): void {
    if (!this.exporter || this.exporter.disposed) return;
    this.exporter.release(key);
    this.stats.dmabufsLive = this.exporter.cachedCount;
  }

  /** Disposes the exporter when this factory opened it (a borrowed one stays its owner's). */
  dispose(): void {
    if (this.exporter && this.ownsExporter) this.exporter.dispose();
    this.stats.dmabufsLive = 0;
    this.exporter = null;
  }

  /** Logs a refusal once: a guest that flushes an unusable buffer 60 times a second must not
   * flood the log. Bounded, so a guest cannot grow it without limit either. */
  private logRefusal(message: string): void {
    if (this.loggedRefusals.has(message)) return;
    if (this.loggedRefusals.size >= LOGGED_REFUSALS_LIMIT) this.loggedRefusals.clear();
    this.loggedRefusals.add(message);
    this.log('warn', message);
  }

  private noteFallback(guest: string, reason: string): void {
    if (this.stats.noteFallback(reason)) this.log('warn', `${guest}: fallback: ${reason}`);
  }
}
