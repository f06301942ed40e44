/**
 * A vhost-user front-end written for tests: it plays QEMU's side of the protocol over a real
 * socket (guest RAM is its own memfd, kicks and interrupts are eventfds) and a guest driver's
 * side of the GPU's control and cursor virtqueues. The back-end under test cannot tell it from
 * QEMU with a guest. A queue can be handed to a "vCPU" (test/helpers/vcpu-worker.ts) that keeps
 * mutating its ring from another thread while the back-end processes it.
 */
import { fd } from '../../native/fd.js';
import {
  DISPLAY_INFO_SIZE,
  encodeMemEntries,
  encodeRequest,
  HDR_SIZE,
  Cmd,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeMemTable,
  encodeMessage,
  encodeVringAddr,
  encodeVringState,
  Feature,
  Flags,
  FrameReader,
  parseU64,
  Request,
  u64Payload,
  type Message,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import {
  Allocator,
  HIGH_START,
  ramRegions,
  RingDriver,
  USER_BASE,
} from '../unit/virtio-gpu-harness.js';

export const PAGE = 4096;
export const FORMAT_B8G8R8X8 = 2;

function readable(socket: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = fd.watchReadable(socket, () => {
      stop();
      resolve();
    });
  });
}

/** The front-end end of a vhost-user socket: requests with NEED_REPLY, replies read back. */
export class VhostSocket {
  private readonly reader = new FrameReader((x) => fd.close(x), 1 << 20, true);
  private readonly queue: Message[] = [];
  constructor(readonly socket: number) {}

  /** Connects to `path`, retrying while the back-end is not listening yet (up to ~5 s). */
  static async connect(path: string): Promise<VhostSocket> {
    for (let attempt = 0; ; attempt++) {
      try {
        return new VhostSocket(fd.unixConnect(path));
      } catch (error) {
        if (attempt > 500) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  }

  send(request: number, payload?: Uint8Array, fds: number[] = []): void {
    fd.unixSend(this.socket, encodeMessage(request, Flags.VERSION, payload), fds);
  }

  async call(request: number, payload?: Uint8Array, fds: number[] = []): Promise<Uint8Array> {
    fd.unixSend(
      this.socket,
      encodeMessage(request, Flags.VERSION | Flags.NEED_REPLY, payload),
      fds,
    );
    for (;;) {
      const queued = this.queue.shift();
      if (queued) {
        if (queued.request !== request) throw new Error(`reply ${queued.request} to ${request}`);
        return queued.payload;
      }
      const chunk = fd.pollReadable(this.socket, 0) ? fd.unixRecv(this.socket, 65536) : null;
      if (chunk === null) {
        await readable(this.socket);
        continue;
      }
      if (chunk.data.length === 0) throw new Error('the back-end closed the connection');
      this.queue.push(...this.reader.push(chunk.data, chunk.fds));
    }
  }

  /** Resolves once the back-end closed the connection (reading and dropping anything else). */
  async closedByPeer(): Promise<void> {
    for (;;) {
      const chunk = fd.pollReadable(this.socket, 0) ? fd.unixRecv(this.socket, 65536) : null;
      if (chunk === null) {
        await readable(this.socket);
        continue;
      }
      for (const x of chunk.fds) fd.close(x);
      if (chunk.data.length === 0) return;
    }
  }

  close(): void {
    this.reader.dispose();
    fd.close(this.socket);
  }
}

/** What a vCPU worker needs to drive one queue (guest-physical addresses are memfd offsets). */
export interface QueueHandOver {
  memfd: number;
  ramBytes: number;
  kickFd: number;
  size: number;
  availGpa: number;
  usedGpa: number;
  /** The ring's avail index and last seen used index at hand-over. */
  availIdx: number;
  lastUsed: number;
}

export interface TestGuestOptions {
  /** Guest RAM (a sparse memfd: only what is written costs memory). Default 64 MiB. */
  ramBytes?: number;
  /** Both queues' size (default 256). */
  queueSize?: number;
  /** Device features to accept besides the transport's (e.g. Feature.VIRTIO_GPU_F_EDID). */
  deviceFeatures?: bigint;
  /**
   * Negotiate VIRTIO_RING_F_EVENT_IDX (as QEMU does) and ask for one interrupt per wait, when
   * its last chain is used (default false: an interrupt per used chain).
   */
  eventIdx?: boolean;
  /** Queues set up over vhost-user: 2 (control and cursor, the default) or 1 (control only). */
  queues?: 1 | 2;
  /** The guest RAM memfd's name (default test-guest-ram). */
  memfdName?: string;
}

/** One guest: QEMU's negotiation, guest RAM, the control (0) and cursor (1) queues. */
export class TestGuest {
  readonly ram: Uint8Array;
  readonly ramBytes: number;
  readonly memfd: number;
  readonly alloc: Allocator;
  readonly rings: [RingDriver, RingDriver];
  readonly kicks: [number, number] = [fd.eventfd(0), fd.eventfd(0)];
  readonly calls: [number, number] = [fd.eventfd(0), fd.eventfd(0)];
  private readonly mapping: ArrayBuffer;
  private socket: VhostSocket | null = null;
  private readonly stopWatches: (() => void)[] = [];
  private readonly waiters: ((() => boolean) | null)[] = [null, null];
  private readonly handedOver = [false, false];
  private readonly deviceFeatures: bigint;
  private readonly eventIdx: boolean;
  private readonly queueCount: number;

  constructor(
    readonly socketPath: string,
    options: TestGuestOptions = {},
  ) {
    this.ramBytes = options.ramBytes ?? 64 << 20;
    this.deviceFeatures = options.deviceFeatures ?? 0n;
    this.eventIdx = options.eventIdx ?? false;
    this.queueCount = options.queues ?? 2;
    this.memfd = fd.memfdCreate(options.memfdName ?? 'test-guest-ram', true);
    fd.ftruncate(this.memfd, this.ramBytes);
    this.mapping = fd.mmap(this.memfd, 0, this.ramBytes, true);
    this.ram = new Uint8Array(this.mapping);
    this.alloc = new Allocator(HIGH_START, this.ramBytes);
    const size = options.queueSize ?? 256;
    this.rings = [
      new RingDriver(this.ram, this.alloc, size),
      new RingDriver(this.ram, this.alloc, size),
    ];
    this.alloc.mark();
  }

  get vhost(): VhostSocket {
    if (!this.socket) throw new Error('not connected');
    return this.socket;
  }

  /** Connects and negotiates in QEMU's order, then enables both queues. */
  async connect(): Promise<void> {
    const front = await VhostSocket.connect(this.socketPath);
    this.socket = front;
    await front.call(Request.GET_FEATURES);
    const protocol = parseU64(await front.call(Request.GET_PROTOCOL_FEATURES));
    front.send(Request.SET_PROTOCOL_FEATURES, u64Payload(protocol));
    await front.call(Request.SET_OWNER);
    await front.call(
      Request.SET_FEATURES,
      u64Payload(
        Feature.VERSION_1 |
          Feature.VHOST_USER_F_PROTOCOL_FEATURES |
          Feature.RING_INDIRECT_DESC |
          (this.eventIdx ? Feature.RING_EVENT_IDX : 0n) |
          this.deviceFeatures,
      ),
    );
    await front.call(Request.SET_MEM_TABLE, encodeMemTable(ramRegions(this.ramBytes)), [
      this.memfd,
      this.memfd,
    ]);
    for (let index = 0; index < this.queueCount; index++) {
      const ring = this.rings[index]!;
      await front.call(Request.SET_VRING_NUM, encodeVringState({ index, num: ring.size }));
      await front.call(Request.SET_VRING_BASE, encodeVringState({ index, num: 0 }));
      await front.call(
        Request.SET_VRING_ADDR,
        encodeVringAddr({
          index: index,
          descUser: BigInt(USER_BASE + ring.descGpa),
          usedUser: BigInt(USER_BASE + ring.usedGpa),
          availUser: BigInt(USER_BASE + ring.availGpa),
        }),
      );
      await front.call(Request.SET_VRING_CALL, u64Payload(BigInt(index)), [this.calls[index]!]);
      await front.call(Request.SET_VRING_KICK, u64Payload(BigInt(index)), [this.kicks[index]!]);
      await front.call(Request.SET_VRING_ENABLE, encodeVringState({ index, num: 1 }));
      const call = this.calls[index]!;
      this.stopWatches.push(
        fd.watchReadable(call, () => {
          fd.eventfdRead(call);
          this.waiters[index]?.();
        }),
      );
    }
  }

  /** Kicks queue `index` and resolves when `count` more chains came back used. */
  kickAndWait(index: number, count: number): Promise<void> {
    if (this.handedOver[index]) throw new Error(`queue ${index} belongs to a vCPU`);
    const ring = this.rings[index]!;
    const target = (ring.usedIdx() + count) & 0xffff;
    // EVENT_IDX: interrupt me when the last of them is used.
    if (this.eventIdx) ring.setUsedEvent((target - 1) & 0xffff);
    return new Promise((resolve) => {
      const check = (): boolean => {
        if (ring.usedIdx() !== target) return false;
        ring.takeUsed();
        this.waiters[index] = null;
        resolve();
        return true;
      };
      this.waiters[index] = check;
      fd.eventfdWrite(this.kicks[index]!);
    });
  }

  /** One control command as Linux sends it (an indirect descriptor); returns the response. */
  async command(request: Uint8Array, responseSize = HDR_SIZE): Promise<Uint8Array> {
    const reqGpa = this.alloc.take(request.length, 8);
    this.ram.set(request, reqGpa);
    const respGpa = this.alloc.take(responseSize, 8);
    this.rings[0].addIndirect([
      { gpa: reqGpa, length: request.length, write: false },
      { gpa: respGpa, length: responseSize, write: true },
    ]);
    await this.kickAndWait(0, 1);
    this.alloc.reset();
    return this.ram.slice(respGpa, respGpa + responseSize);
  }

  /** A command whose response must be `expected` (default OK_NODATA). */
  async expect(request: Uint8Array, expected: number = Resp.OK_NODATA): Promise<void> {
    const size = expected === Resp.OK_DISPLAY_INFO ? DISPLAY_INFO_SIZE : HDR_SIZE;
    const response = await this.command(request, size);
    const type = new DataView(response.buffer).getUint32(0, true);
    if (type !== expected) {
      throw new Error(
        `command 0x${new DataView(request.buffer).getUint32(0, true).toString(16)}: response 0x${type.toString(16)}, expected 0x${expected.toString(16)}`,
      );
    }
  }

  /** A 2D B8G8R8X8 resource with one contiguous backing span in guest RAM; returns its address. */
  async createResource(id: number, width: number, height: number): Promise<number> {
    await this.expect(encodeRequest(Cmd.RESOURCE_CREATE_2D, [id, FORMAT_B8G8R8X8, width, height]));
    const bytes = Math.ceil((width * height * 4) / PAGE) * PAGE;
    const base = this.alloc.reserve(bytes, PAGE);
    await this.expect(
      encodeRequest(
        Cmd.RESOURCE_ATTACH_BACKING,
        [id, 1],
        {},
        encodeMemEntries([{ addr: base, length: bytes }]),
      ),
    );
    return base;
  }

  /**
   * Gives queue `index` to a vCPU: from now on only the worker touches its ring. The caller
   * has written descriptors for the heads it will publish (see RingDriver.writeDesc).
   */
  handOver(index: number): QueueHandOver {
    const ring = this.rings[index]!;
    this.handedOver[index] = true;
    const view = new DataView(this.ram.buffer);
    return {
      memfd: this.memfd,
      ramBytes: this.ramBytes,
      kickFd: this.kicks[index]!,
      size: ring.size,
      availGpa: ring.availGpa,
      usedGpa: ring.usedGpa,
      availIdx: view.getUint16(ring.availGpa + 2, true),
      lastUsed: ring.usedIdx(),
    };
  }

  close(): void {
    for (const stop of this.stopWatches.splice(0)) stop();
    this.socket?.close();
    this.socket = null;
    for (const x of [...this.kicks, ...this.calls]) fd.close(x);
    fd.munmap(this.mapping);
    fd.close(this.memfd);
  }
}
