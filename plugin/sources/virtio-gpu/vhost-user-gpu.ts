/**
 * virtio-gpu on the generic vhost-user back-end (plugin/vhost-user): 2 queues (control,
 * cursor), the GPU feature bits, the 16-byte config space and GPU_SET_SOCKET. The commands
 * themselves are `GpuDevice`'s.
 */
import type { HeadInfo, SourceEvents } from '../types.js';
import {
  VhostUserDevice,
  type DeviceContext,
  type DeviceIo,
  type DeviceModel,
} from '../../vhost-user/vhost-user-device.js';
import type { Logger, LogLimits } from '../../common/log.js';
import {
  Feature,
  ProtocolError,
  Request,
  type Message,
} from '../../vhost-user/vhost-user-protocol.js';
import { scatterWritable, type Chain } from '../../vhost-user/virtqueue.js';
import type { QueueBudget, QueueScheduler } from '../../vhost-user/scheduler.js';
import type { TypedEmitter } from '../../common/emitter.js';
import { GpuDevice, MAX_REQUEST_BYTES, type GpuLimits } from './gpu-device.js';
import { encodeHeaderResponse, HDR_SIZE, readHeader, Resp } from './gpu-protocol.js';

export const CONTROL_QUEUE = 0;
export const CURSOR_QUEUE = 1;
export const QUEUE_COUNT = 2;
/** Requests up to this size are gathered without allocating (the largest fixed-size command is
 * RESOURCE_CREATE_BLOB's 72 bytes; ATTACH_BACKING with a few entries fits too). */
const SMALL_REQUEST_BYTES = 512;
const CONFIG_SIZE = 16;

export interface GpuModelOptions {
  heads: HeadInfo[];
  emitter: TypedEmitter<SourceEvents>;
  /** Offer VIRTIO_GPU_F_RESOURCE_BLOB (guest blobs). */
  blob?: boolean;
  limits?: Partial<GpuLimits>;
  /** The guest's log rate (burst, then lines a second; see plugin/common/log.ts). */
  logLimits?: Partial<LogLimits>;
  /** Takes the vhost-user-gpu socket fd QEMU passes with GPU_SET_SOCKET. */
  onGpuSocket?: (fd: number) => void;
}

/** The virtio-gpu device model: chains of the control and cursor queues go to `GpuDevice`. */
export class GpuDeviceModel implements DeviceModel {
  readonly queueCount = QUEUE_COUNT;
  readonly deviceFeatures: bigint;
  readonly gpu: GpuDevice;
  private readonly log: Logger;

  constructor(
    private readonly context: DeviceContext,
    private readonly options: GpuModelOptions,
    private readonly closeFd: (fd: number) => void,
  ) {
    this.log = context.log;
    this.gpu = new GpuDevice({
      memory: context.memory,
      heads: options.heads,
      emitter: options.emitter,
      log: context.log,
      limits: options.limits,
      logLimits: options.logLimits,
    });
    this.deviceFeatures =
      Feature.VIRTIO_GPU_F_EDID | (options.blob ? Feature.VIRTIO_GPU_F_RESOURCE_BLOB : 0n);
  }

  featuresChanged(features: bigint): void {
    this.gpu.edid = (features & Feature.VIRTIO_GPU_F_EDID) !== 0n;
    this.gpu.blob = (features & Feature.VIRTIO_GPU_F_RESOURCE_BLOB) !== 0n;
  }

  readConfig(): Uint8Array {
    const config = new Uint8Array(CONFIG_SIZE);
    // events_read, events_clear: 0; num_scanouts; num_capsets: 0. QEMU overrides the
    // fields it manages (scanouts, events) with its own values.
    new DataView(config.buffer).setUint32(8, this.gpu.scanoutCount, true);
    return config;
  }

  writeConfig(): void {
    // events_clear: no events are ever raised
  }

  reset(): void {
    this.gpu.reset();
  }

  memoryChanged(): void {
    this.gpu.memoryChanged();
  }

  handleRequest(msg: Message, takeFd: () => number | null): Uint8Array | null | undefined {
    if (msg.request !== Request.GPU_SET_SOCKET) return undefined;
    const fd = takeFd();
    if (fd === null) throw new ProtocolError('GPU_SET_SOCKET without an fd');
    if (this.options.onGpuSocket) this.options.onGpuSocket(fd);
    else this.closeFd(fd);
    return null;
  }

  processChain(queue: number, chain: Chain): number {
    return queue === CONTROL_QUEUE ? this.runControl(chain) : this.runCursor(chain);
  }

  /**
   * Small requests (every per-frame command) are gathered into one preallocated buffer, seen
   * through a view and a DataView of their exact length, made once per length: a frame's
   * commands allocate nothing. Larger ones (ATTACH_BACKING's entries) share a second buffer
   * that grows to the largest seen (at most MAX_REQUEST_BYTES): a guest repeating 256 KiB
   * requests then allocates nothing each time. Such allocations are memory outside V8's heap,
   * and their churn drove V8 into full collections that stalled every guest for 100+ ms.
   */
  private readonly smallRequest = new Uint8Array(SMALL_REQUEST_BYTES);
  private readonly smallViews: (Uint8Array | undefined)[] = [];
  private readonly smallDataViews: (DataView | undefined)[] = [];
  private largeRequest = new Uint8Array(0);

  /** The chain's readable bytes in the shared large buffer, or null past MAX_REQUEST_BYTES. */
  private gatherLarge(chain: Chain): Uint8Array | null {
    const length = chain.readableLength;
    if (length > MAX_REQUEST_BYTES) return null;
    if (this.largeRequest.length < length) {
      const grown = Math.max(length, 2 * this.largeRequest.length);
      this.largeRequest = new Uint8Array(Math.min(MAX_REQUEST_BYTES, grown));
    }
    const request = this.largeRequest.subarray(0, length);
    chain.gather(request);
    return request;
  }

  /** Executes one control chain; returns the bytes written into it. */
  private runControl(chain: Chain): number {
    const counters = this.context.counters;
    const length = chain.readableLength;
    if (length >= HDR_SIZE && length <= SMALL_REQUEST_BYTES) {
      let request = this.smallViews[length];
      let view = this.smallDataViews[length];
      if (!request || !view) {
        request = this.smallRequest.subarray(0, length);
        view = new DataView(request.buffer, request.byteOffset, length);
        this.smallViews[length] = request;
        this.smallDataViews[length] = view;
      }
      chain.gather(request);
      const response = this.gpu.handleControl(request, view);
      if (chain.scatter(response)) {
        counters.responses++;
        return response.length;
      }
      return this.responseDidNotFit(chain, request, response);
    }
    let request = this.gatherLarge(chain);
    if (!request) {
      // Too long to be any command: answer from its header alone (the command then fails
      // its size check, or is a header-only command).
      this.log('warn', `control request of ${chain.readableLength} bytes truncated`);
      const head = new Uint8Array(HDR_SIZE);
      let at = 0;
      for (const part of chain.readable) {
        if (at >= HDR_SIZE) break;
        const take = Math.min(part.length, HDR_SIZE - at);
        head.set(part.subarray(0, take), at);
        at += take;
      }
      request = head;
    }
    const response = this.gpu.handleControl(request);
    if (scatterWritable(chain, response)) {
      counters.responses++;
      return response.length;
    }
    return this.responseDidNotFit(chain, request, response);
  }

  private responseDidNotFit(chain: Chain, request: Uint8Array, response: Uint8Array): number {
    // (rare: a guest that gave too little room for the response)
    const counters = this.context.counters;
    if (response.length > HDR_SIZE && chain.writableLength >= HDR_SIZE) {
      const header =
        request.length >= HDR_SIZE
          ? readHeader(new DataView(request.buffer, request.byteOffset, HDR_SIZE))
          : null;
      this.log(
        'warn',
        `response of ${response.length} bytes does not fit ${chain.writableLength}: ERR_UNSPEC`,
      );
      const error = encodeHeaderResponse(Resp.ERR_UNSPEC, header);
      scatterWritable(chain, error);
      counters.responses++;
      return error.length;
    }
    counters.dropped++;
    this.log(
      'warn',
      `control chain ${chain.head}: ${chain.writableLength} writable bytes, no room for a response`,
    );
    return 0;
  }

  private runCursor(chain: Chain): number {
    const request = this.gatherLarge(chain);
    if (!request) {
      this.context.counters.dropped++;
      this.log('warn', `cursor request of ${chain.readableLength} bytes dropped`);
      return 0;
    }
    this.gpu.handleCursor(request);
    return 0;
  }
}

export interface VhostUserGpuDeviceOptions extends GpuModelOptions {
  io: DeviceIo;
  log: Logger;
  /** While false, kicks are noted but queues are not run (e.g. waiting for QEMU's display info). */
  canProcess?: () => boolean;
  /** See VhostUserDeviceOptions.warnLimit. */
  warnLimit?: number;
  /** See VhostUserDeviceOptions.budget and .scheduler. */
  budget?: Partial<QueueBudget>;
  scheduler?: QueueScheduler;
}

/** A vhost-user back-end whose device is a virtio-gpu. */
export class VhostUserGpuDevice extends VhostUserDevice<GpuDeviceModel> {
  constructor(options: VhostUserGpuDeviceOptions) {
    super({
      io: options.io,
      log: options.log,
      canProcess: options.canProcess,
      warnLimit: options.warnLimit,
      budget: options.budget,
      scheduler: options.scheduler,
      createModel: (context) => new GpuDeviceModel(context, options, (fd) => options.io.close(fd)),
    });
  }

  get gpu(): GpuDevice {
    return this.model.gpu;
  }
}
