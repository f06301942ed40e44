/**
 * UdmabufExporter: opens /dev/udmabuf once and turns backing lists into dma-bufs, keeping one
 * dma-buf per guest resource until its backing changes or the resource goes away.
 *
 * Fd ownership: the exporter owns the device fd and every cached dma-buf fd and closes each
 * exactly once (on replacement, release or dispose). `create` hands a new fd to the caller.
 * Memfds in the ranges are always borrowed.
 */
import { fd as fdModule, pageSize as systemPageSize, type UdmabufRange } from '../../native/fd.js';
import { UdmabufBadRangeError, UdmabufUnavailableError, errnoCodeOf } from './errors.js';
import { readUdmabufLimits, type UdmabufLimits } from './limits.js';
import {
  assertPageSize,
  explainUdmabufFailure,
  planUdmabuf,
  type MemfdQueries,
  type MemfdRange,
} from './ranges.js';

/** The system calls the exporter makes; replaced by a fake in unit tests. */
export interface UdmabufSyscalls extends MemfdQueries {
  open(path: string): number;
  create(device: number, range: UdmabufRange): number;
  createList(device: number, ranges: UdmabufRange[]): number;
  close(fd: number): void;
}

export const nativeUdmabufSyscalls: UdmabufSyscalls = {
  open: (path) => fdModule.udmabufOpen(path),
  create: (device, range) => fdModule.udmabufCreate(device, range),
  createList: (device, ranges) => fdModule.udmabufCreateList(device, ranges),
  close: (fd) => fdModule.close(fd),
  fileSize: (fd) => fdModule.fdSize(fd),
  seals: (fd) => fdModule.getSeals(fd),
};

export const UDMABUF_DEVICE = '/dev/udmabuf';

export interface ExporterOptions {
  devicePath?: string;
  /** Defaults to the module parameters read from sysfs. */
  limits?: UdmabufLimits;
  pageSize?: number;
  syscalls?: UdmabufSyscalls;
}

export interface CreateOptions {
  /** Merge neighbouring ranges (default true). */
  coalesce?: boolean;
  /**
   * Run guestfb's checks before the ioctl (default true). With false the list goes to the kernel
   * as is and only the errno mapping names the refusal: used to show the kernel agrees.
   */
  precheck?: boolean;
}

/** A dma-buf made from a backing list. */
export interface Dmabuf {
  fd: number;
  /** Bytes: the sum of the range lengths. */
  size: number;
  /** Ranges handed to the kernel (after coalescing). */
  rangeCount: number;
}

interface CacheEntry {
  generation: number;
  dmabuf: Dmabuf;
}

export class UdmabufExporter {
  readonly limits: UdmabufLimits;
  readonly pageSize: number;
  private readonly syscalls: UdmabufSyscalls;
  private device: number;
  private readonly cache = new Map<number, CacheEntry>();

  private constructor(
    device: number,
    limits: UdmabufLimits,
    pageSize: number,
    syscalls: UdmabufSyscalls,
  ) {
    this.device = device;
    this.limits = limits;
    this.pageSize = pageSize;
    this.syscalls = syscalls;
  }

  /** Opens the device; throws UdmabufUnavailableError when there is none (or no access). */
  static open(options: ExporterOptions = {}): UdmabufExporter {
    const syscalls = options.syscalls ?? nativeUdmabufSyscalls;
    const pageSize = options.pageSize ?? systemPageSize;
    assertPageSize(pageSize);
    const limits = options.limits ?? readUdmabufLimits();
    const devicePath = options.devicePath ?? UDMABUF_DEVICE;
    let device: number;
    try {
      device = syscalls.open(devicePath);
    } catch (error) {
      const reason = errnoCodeOf(error) ?? String(error);
      throw new UdmabufUnavailableError(`cannot open ${devicePath} (${reason})`, 'precheck', error);
    }
    return new UdmabufExporter(device, limits, pageSize, syscalls);
  }

  get disposed(): boolean {
    return this.device < 0;
  }

  /** Number of resources with a cached dma-buf. */
  get cachedCount(): number {
    return this.cache.size;
  }

  /** A new dma-buf over `ranges`; the caller owns the returned fd. */
  create(ranges: readonly MemfdRange[], options: CreateOptions = {}): Dmabuf {
    if (this.disposed) throw new UdmabufUnavailableError('the exporter was disposed', 'precheck');
    const limits = this.limits;
    let list: MemfdRange[];
    let size: number;
    if (options.precheck === false) {
      list = ranges.map((range) => ({ ...range }));
      size = list.reduce((sum, range) => sum + range.length, 0);
    } else {
      const plan = planUdmabuf(
        ranges,
        { pageSize: this.pageSize, limits, coalesce: options.coalesce },
        this.syscalls,
      );
      list = plan.ranges;
      size = plan.totalBytes;
    }
    const kernelList = list.map((range) => ({
      memfd: range.fd,
      offset: range.offset,
      size: range.length,
    }));
    let fd: number;
    try {
      fd =
        kernelList.length === 1
          ? this.syscalls.create(this.device, kernelList[0]!)
          : this.syscalls.createList(this.device, kernelList);
    } catch (error) {
      if (errnoCodeOf(error) === null) throw error; // argument errors are bugs, not refusals
      throw explainUdmabufFailure(error, {
        ranges: list,
        limits,
        pageSize: this.pageSize,
        queries: this.syscalls,
      });
    }
    return { fd, size, rangeCount: list.length };
  }

  /**
   * The dma-buf of a resource for one backing generation, created on first use and kept until
   * the generation changes, `release` or `dispose`. The exporter keeps ownership of the fd: a
   * user that needs it longer (e.g. past a release) must dup it. On failure nothing is cached.
   */
  acquire(resourceId: number, generation: number, ranges: readonly MemfdRange[]): Dmabuf {
    if (!Number.isSafeInteger(resourceId) || resourceId < 0) {
      throw new UdmabufBadRangeError(-1, `bad resource id ${resourceId}`, 'precheck');
    }
    const cached = this.cache.get(resourceId);
    if (cached !== undefined && cached.generation === generation) return cached.dmabuf;
    if (cached !== undefined) this.release(resourceId);
    const dmabuf = this.create(ranges);
    this.cache.set(resourceId, { generation, dmabuf });
    return dmabuf;
  }

  /** The cached dma-buf of a resource for `generation`, or null. */
  peek(resourceId: number, generation: number): Dmabuf | null {
    const cached = this.cache.get(resourceId);
    return cached !== undefined && cached.generation === generation ? cached.dmabuf : null;
  }

  /** Closes a resource's cached dma-buf (backing detached or resource destroyed). */
  release(resourceId: number): void {
    const cached = this.cache.get(resourceId);
    if (cached === undefined) return;
    this.cache.delete(resourceId);
    this.syscalls.close(cached.dmabuf.fd);
  }

  /** Closes every cached dma-buf and the device. Idempotent. */
  dispose(): void {
    for (const resourceId of [...this.cache.keys()]) this.release(resourceId);
    if (this.device >= 0) {
      const device = this.device;
      this.device = -1;
      this.syscalls.close(device);
    }
  }
}
