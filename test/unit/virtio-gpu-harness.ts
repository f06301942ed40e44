/**
 * Test harness for the virtio-gpu back-end without sockets: fake fds (memfds as ArrayBuffers,
 * eventfds as counters), a guest RAM laid out like QEMU's pc machine (two regions of one memfd),
 * and a driver that builds split-ring descriptor chains the way a guest does.
 */
import type { SourceEvents } from '../../plugin/sources/types.js';
import { TypedEmitter } from '../../plugin/common/emitter.js';
import type { LogLevel } from '../../plugin/common/log.js';
import type { GpuLimits } from '../../plugin/sources/virtio-gpu/gpu-device.js';
import { HDR_SIZE } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeMemTable,
  encodeVringAddr,
  encodeVringState,
  Feature,
  Flags,
  Request,
  u64Payload,
  type Message,
  type WireMemoryRegion,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import type { DeviceIo } from '../../plugin/vhost-user/vhost-user-device.js';
import type { QueueBudget, QueueScheduler } from '../../plugin/vhost-user/scheduler.js';
import { VhostUserGpuDevice } from '../../plugin/sources/virtio-gpu/vhost-user-gpu.js';

type FakeFile =
  { kind: 'mem'; buffer: ArrayBuffer } | { kind: 'eventfd'; counter: number } | { kind: 'pipe' };

export class FakeFds implements DeviceIo {
  private next = 1000;
  readonly files = new Map<number, FakeFile>();
  readonly watchers = new Map<number, () => void>();
  readonly mappings = new Set<Uint8Array>();
  closed: number[] = [];
  /**
   * Maps asked for past the end of a memfd. Real mmap grants them (touching the tail is SIGBUS);
   * this stand-in refuses them and counts them, so a test sees the caller skipped its fstat check.
   */
  mapsPastEnd = 0;

  memfd(buffer: ArrayBuffer): number {
    const fd = this.next++;
    this.files.set(fd, { kind: 'mem', buffer });
    return fd;
  }

  eventfd(): number {
    const fd = this.next++;
    this.files.set(fd, { kind: 'eventfd', counter: 0 });
    return fd;
  }

  /** A non-file fd (one end of a pipe): neither mappable nor an eventfd. */
  pipe(): number {
    const fd = this.next++;
    this.files.set(fd, { kind: 'pipe' });
    return fd;
  }

  dup(fd: number): number {
    const file = this.files.get(fd);
    if (!file) throw new Error(`dup of closed fd ${fd}`);
    const copy = this.next++;
    this.files.set(copy, file);
    return copy;
  }

  map(fd: number, offset: number, length: number): Uint8Array {
    const file = this.files.get(fd);
    if (!file || file.kind !== 'mem') throw new Error(`map of fd ${fd}`);
    if (offset % 4096 !== 0) throw new Error('unaligned mmap offset');
    if (offset + length > file.buffer.byteLength) {
      this.mapsPastEnd++;
      throw new Error('mmap past the end of the memfd');
    }
    const view = new Uint8Array(file.buffer, offset, length);
    this.mappings.add(view);
    return view;
  }

  fileSize(fd: number): number {
    const file = this.files.get(fd);
    if (!file) throw new Error(`fd ${fd} is not open`);
    if (file.kind !== 'mem') throw new Error(`fd ${fd} is not a regular file (${file.kind})`);
    return file.buffer.byteLength;
  }

  unmap(mapping: Uint8Array): void {
    if (!this.mappings.delete(mapping)) throw new Error('unmap of an unknown mapping');
  }

  close(fd: number): void {
    if (!this.files.delete(fd)) throw new Error(`close of fd ${fd} that is not open`);
    this.watchers.delete(fd);
    this.closed.push(fd);
  }

  eventfdWrite(fd: number): void {
    const file = this.files.get(fd);
    if (!file || file.kind !== 'eventfd') throw new Error(`eventfdWrite on fd ${fd}`);
    file.counter++;
  }

  eventfdRead(fd: number): void {
    const file = this.files.get(fd);
    if (!file || file.kind !== 'eventfd') throw new Error(`eventfdRead on fd ${fd}`);
    file.counter = 0;
  }

  counter(fd: number): number {
    const file = this.files.get(fd);
    return file?.kind === 'eventfd' ? file.counter : -1;
  }

  watchReadable(fd: number, onReadable: () => void): () => void {
    if (!this.files.has(fd)) throw new Error(`watch of fd ${fd}`);
    this.watchers.set(fd, onReadable);
    return () => {
      if (this.watchers.get(fd) === onReadable) this.watchers.delete(fd);
    };
  }

  /** The guest's kick: bump the eventfd and run its watcher. */
  kick(fd: number): void {
    this.eventfdWrite(fd);
    this.watchers.get(fd)?.();
  }
}

export const RAM_SIZE = 8 * 1024 * 1024;
export const LOW_END = 0xa0000;
export const HIGH_START = 0x100000;
export const USER_BASE = 0x7f12_3400_0000;

/** QEMU-like regions of one memfd: [0, 640K) and [1M, RAM_SIZE). */
export function ramRegions(ramSize = RAM_SIZE): WireMemoryRegion[] {
  return [
    { guestAddr: 0n, size: BigInt(LOW_END), userAddr: BigInt(USER_BASE), mmapOffset: 0n },
    {
      guestAddr: BigInt(HIGH_START),
      size: BigInt(ramSize - HIGH_START),
      userAddr: BigInt(USER_BASE + HIGH_START),
      mmapOffset: BigInt(HIGH_START),
    },
  ];
}

export function message(
  request: number,
  payload: Uint8Array = new Uint8Array(0),
  fds: number[] = [],
  needReply = false,
): Message {
  return { request, flags: Flags.VERSION | (needReply ? Flags.NEED_REPLY : 0), payload, fds };
}

/**
 * Sets up vring `index` as QEMU does once the memory table is in: its size, base 0, the rings'
 * addresses (QEMU's user addresses, USER_BASE + guest-physical), call and kick fds, enabled.
 */
export function setUpVring(
  send: (request: number, payload?: Uint8Array, fds?: number[]) => unknown,
  index: number,
  ring: RingDriver,
  size: number,
  fds: { call: number; kick: number },
): void {
  send(Request.SET_VRING_NUM, encodeVringState({ index, num: size }));
  send(Request.SET_VRING_BASE, encodeVringState({ index, num: 0 }));
  send(
    Request.SET_VRING_ADDR,
    encodeVringAddr({
      index: index,
      descUser: BigInt(USER_BASE + ring.descGpa),
      usedUser: BigInt(USER_BASE + ring.usedGpa),
      availUser: BigInt(USER_BASE + ring.availGpa),
    }),
  );
  send(Request.SET_VRING_CALL, u64Payload(BigInt(index)), [fds.call]);
  send(Request.SET_VRING_KICK, u64Payload(BigInt(index)), [fds.kick]);
  send(Request.SET_VRING_ENABLE, encodeVringState({ index, num: 1 }));
}

export interface DriverOptions {
  queueSize: number;
  eventIdx: boolean;
}

/** The guest side of one split virtqueue, in `ram` (guest-physical address = offset in ram). */
export class RingDriver {
  readonly descGpa: number;
  readonly availGpa: number;
  readonly usedGpa: number;
  private readonly view: DataView;
  private free: number[];
  private availIdx = 0;
  private lastUsed = 0;
  private readonly chains = new Map<number, number[]>();

  constructor(
    readonly ram: Uint8Array,
    readonly alloc: Allocator,
    readonly size: number,
  ) {
    this.view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
    this.descGpa = alloc.take(16 * size, 4096);
    this.availGpa = alloc.take(6 + 2 * size, 2);
    this.usedGpa = alloc.take(6 + 8 * size, 4096);
    this.free = Array.from({ length: size }, (_, i) => i);
  }

  get freeCount(): number {
    return this.free.length;
  }

  writeDesc(
    index: number,
    gpa: number | bigint,
    length: number,
    flags: number,
    next: number,
    table = this.descGpa,
  ): void {
    const at = table + 16 * index;
    this.view.setBigUint64(at, BigInt(gpa), true);
    this.view.setUint32(at + 8, length >>> 0, true);
    this.view.setUint16(at + 12, flags, true);
    this.view.setUint16(at + 14, next, true);
  }

  /** Adds a chain of buffers (direct descriptors); returns the head. */
  addChain(buffers: { gpa: number | bigint; length: number; write: boolean }[]): number {
    if (buffers.length > this.free.length) throw new Error('ring full');
    const indices = this.free.splice(0, buffers.length);
    buffers.forEach((b, i) => {
      const last = i === buffers.length - 1;
      this.writeDesc(
        indices[i]!,
        b.gpa,
        b.length,
        (last ? 0 : 1) | (b.write ? 2 : 0),
        last ? 0 : indices[i + 1]!,
      );
    });
    this.chains.set(indices[0]!, indices);
    this.publish(indices[0]!);
    return indices[0]!;
  }

  /** Adds a chain as one indirect descriptor pointing at a table in guest memory. */
  addIndirect(buffers: { gpa: number | bigint; length: number; write: boolean }[]): number {
    const table = this.alloc.take(16 * buffers.length, 16);
    buffers.forEach((b, i) => {
      const last = i === buffers.length - 1;
      this.writeDesc(
        i,
        b.gpa,
        b.length,
        (last ? 0 : 1) | (b.write ? 2 : 0),
        last ? 0 : i + 1,
        table,
      );
    });
    const [head] = this.free.splice(0, 1);
    this.writeDesc(head!, table, 16 * buffers.length, 4, 0);
    this.chains.set(head!, [head!]);
    this.publish(head!);
    return head!;
  }

  /** Takes raw descriptor indices (already written with writeDesc) and publishes a head. */
  publish(head: number): void {
    this.view.setUint16(this.availGpa + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.view.setUint16(this.availGpa + 2, this.availIdx, true);
  }

  claim(count: number): number[] {
    const taken = this.free.splice(0, count);
    if (taken.length !== count) throw new Error('ring full');
    this.chains.set(taken[0]!, taken);
    return taken;
  }

  setAvailFlags(flags: number): void {
    this.view.setUint16(this.availGpa, flags, true);
  }

  setUsedEvent(value: number): void {
    this.view.setUint16(this.availGpa + 4 + 2 * this.size, value, true);
  }

  availEvent(): number {
    return this.view.getUint16(this.usedGpa + 4 + 8 * this.size, true);
  }

  usedIdx(): number {
    return this.view.getUint16(this.usedGpa + 2, true);
  }

  /** New used elements since the last call; frees their descriptors. */
  takeUsed(): { id: number; length: number }[] {
    const out = [];
    const idx = this.usedIdx();
    while (this.lastUsed !== idx) {
      const at = this.usedGpa + 4 + 8 * (this.lastUsed % this.size);
      const id = this.view.getUint32(at, true);
      const length = this.view.getUint32(at + 4, true);
      out.push({ id, length });
      const indices = this.chains.get(id);
      if (indices) {
        this.free.push(...indices);
        this.chains.delete(id);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}

/** A bump allocator over guest RAM above 1 MiB. */
export class Allocator {
  private next: number;
  constructor(
    private start = HIGH_START,
    private readonly end = RAM_SIZE,
  ) {
    this.next = start;
  }
  /** Keeps everything taken so far across `reset`. */
  mark(): void {
    this.start = this.next;
  }
  /** Takes memory that survives `reset`. */
  reserve(length: number, align = 4096): number {
    const at = this.take(length, align);
    this.mark();
    return at;
  }
  take(length: number, align = 16): number {
    const at = Math.ceil(this.next / align) * align;
    if (at + length > this.end) throw new Error('guest RAM exhausted');
    this.next = at + length;
    return at;
  }
  reset(): void {
    this.next = this.start;
  }
}

export interface RecordedEvent {
  name: keyof SourceEvents;
  args: unknown[];
}

export interface BenchOptions {
  eventIdx?: boolean;
  indirect?: boolean;
  blob?: boolean;
  queueSize?: number;
  warnLimit?: number;
  scanouts?: number;
  width?: number;
  height?: number;
  /** Takes GPU_SET_SOCKET fds (default: the device closes them). */
  onGpuSocket?: (fd: number) => void;
  /** The processing gate (default: always open). */
  canProcess?: () => boolean;
  limits?: Partial<GpuLimits>;
  /** Default: no slice limit, so a kick runs every chain at once (tests of scheduling set it). */
  budget?: Partial<QueueBudget>;
  scheduler?: QueueScheduler;
}

/**
 * A device with guest RAM, two rings set up over vhost-user messages, and helpers to issue
 * control and cursor commands as a guest would.
 */
export class GpuBench {
  readonly fds = new FakeFds();
  readonly ramBuffer: ArrayBuffer;
  readonly ram: Uint8Array;
  readonly memfd: number;
  readonly emitter: TypedEmitter<SourceEvents>;
  readonly events: RecordedEvent[] = [];
  readonly logs: { level: LogLevel; message: string }[] = [];
  readonly device: VhostUserGpuDevice;
  readonly alloc: Allocator;
  readonly control: RingDriver;
  readonly cursor: RingDriver;
  readonly kick: [number, number];
  readonly call: [number, number];
  readonly listenerErrors: unknown[] = [];

  constructor(options: BenchOptions = {}) {
    this.ramBuffer = new ArrayBuffer(RAM_SIZE);
    this.ram = new Uint8Array(this.ramBuffer);
    this.memfd = this.fds.memfd(this.ramBuffer);
    this.emitter = new TypedEmitter<SourceEvents>((error) => this.listenerErrors.push(error));
    for (const name of [
      'headsChanged',
      'resourceCreated',
      'backingChanged',
      'resourceDestroyed',
      'scanoutSet',
      'flush',
      'cursor',
      'disconnected',
    ] as const) {
      this.emitter.on(name, (...args: unknown[]) => this.events.push({ name, args }));
    }
    const scanouts = options.scanouts ?? 1;
    this.device = new VhostUserGpuDevice({
      io: this.fds,
      heads: Array.from({ length: scanouts }, (_, id) => ({
        id,
        width: options.width ?? 1280,
        height: options.height ?? 800,
        x: 0,
        y: 0,
        enabled: true,
        name: `test-${id}`,
      })),
      emitter: this.emitter,
      log: (level, message) => this.logs.push({ level, message }),
      blob: options.blob ?? false,
      warnLimit: options.warnLimit ?? Infinity,
      onGpuSocket: options.onGpuSocket,
      canProcess: options.canProcess,
      limits: options.limits,
      budget: options.budget ?? { chainsPerSlice: Number.MAX_SAFE_INTEGER, sliceMs: 1000 },
      scheduler: options.scheduler,
    });
    this.alloc = new Allocator();
    const size = options.queueSize ?? 64;
    this.control = new RingDriver(this.ram, this.alloc, size);
    this.cursor = new RingDriver(this.ram, this.alloc, size);
    this.alloc.mark();
    this.kick = [this.fds.eventfd(), this.fds.eventfd()];
    this.call = [this.fds.eventfd(), this.fds.eventfd()];

    let features =
      Feature.VERSION_1 | Feature.VHOST_USER_F_PROTOCOL_FEATURES | Feature.VIRTIO_GPU_F_EDID;
    if (options.eventIdx ?? true) features |= Feature.RING_EVENT_IDX;
    if (options.indirect ?? true) features |= Feature.RING_INDIRECT_DESC;
    if (options.blob) features |= Feature.VIRTIO_GPU_F_RESOURCE_BLOB;
    this.send(Request.SET_OWNER);
    this.send(Request.SET_PROTOCOL_FEATURES, u64Payload(0xffffn));
    this.send(Request.SET_FEATURES, u64Payload(features));
    const regions = ramRegions();
    this.send(
      Request.SET_MEM_TABLE,
      encodeMemTable(regions),
      regions.map(() => this.fds.dup(this.memfd)),
    );
    [this.control, this.cursor].forEach((ring, index) => {
      setUpVring((...args) => this.send(...args), index, ring, size, {
        call: this.fds.dup(this.call[index]!),
        kick: this.fds.dup(this.kick[index]!),
      });
    });
  }

  /** Sends a vhost-user message; returns the reply payload (or null). */
  send(
    request: number,
    payload: Uint8Array = new Uint8Array(0),
    fds: number[] = [],
    needReply = false,
  ): Uint8Array | null {
    const reply = this.device.handle(message(request, payload, fds, needReply));
    return reply ? reply.subarray(12) : null;
  }

  /** The fd the device now holds for kicks of a queue (dup of ours). */
  private deviceKickFd(index: number): number {
    return this.device.queues[index]!.kickFd!;
  }

  kickQueue(index: number): void {
    this.fds.kick(this.deviceKickFd(index));
  }

  write(bytes: Uint8Array, align = 8): number {
    const gpa = this.alloc.take(Math.max(1, bytes.length), align);
    this.ram.set(bytes, gpa);
    return gpa;
  }

  /**
   * Issues one control command: request in one readable buffer, `responseSize` writable bytes.
   * Returns the bytes the device reported as written.
   */
  command(request: Uint8Array, responseSize = HDR_SIZE, indirect = false): Uint8Array {
    const reqGpa = this.write(request);
    const respGpa = this.alloc.take(Math.max(1, responseSize), 8);
    this.ram.fill(0xee, respGpa, respGpa + responseSize);
    const buffers = [
      { gpa: reqGpa, length: request.length, write: false },
      { gpa: respGpa, length: responseSize, write: true },
    ];
    if (indirect) this.control.addIndirect(buffers);
    else this.control.addChain(buffers);
    this.kickQueue(0);
    const used = this.control.takeUsed();
    if (used.length !== 1) throw new Error(`expected one used element, got ${used.length}`);
    this.alloc.reset();
    return this.ram.slice(respGpa, respGpa + used[0]!.length);
  }

  cursorCommand(request: Uint8Array): void {
    const gpa = this.write(request);
    this.cursor.addChain([{ gpa, length: request.length, write: false }]);
    this.kickQueue(1);
    this.cursor.takeUsed();
    this.alloc.reset();
  }

  eventsNamed(name: keyof SourceEvents): unknown[][] {
    return this.events.filter((e) => e.name === name).map((e) => e.args);
  }
}

export function responseType(response: Uint8Array): number {
  return new DataView(response.buffer, response.byteOffset, response.byteLength).getUint32(0, true);
}
