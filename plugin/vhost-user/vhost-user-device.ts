/**
 * The generic vhost-user back-end state machine: takes parsed front-end messages, keeps
 * features, the memory table and the rings, runs the queues when kicked, and returns replies.
 * What the device does with a chain (virtio-gpu, virtio-input) is a `DeviceModel`. I/O goes
 * through `DeviceIo`, so the same code runs against real fds (native) and against in-memory
 * fakes in tests.
 *
 * Fd ownership: this object owns every fd that arrives with a message (memory region fds, kick,
 * call and err eventfds); it closes them when replaced, on reset and on dispose, and closes fds
 * that came with a message that does not use them. A model's own request (`handleRequest`) may
 * take fds with `takeFd`; it then owns them.
 */
import {
  GuestMemory,
  MAX_REGIONS,
  MemoryError,
  toSafeNumber,
  type RegionMapper,
} from './guest-memory.js';
import {
  encodeConfig,
  encodeReply,
  encodeVringState,
  Feature,
  Flags,
  parseConfig,
  parseMemTable,
  parseSingleRegion,
  parseU64,
  parseVringAddr,
  parseVringFd,
  parseVringState,
  ProtocolError,
  ProtocolFeature,
  Request,
  requestName,
  u64Payload,
  type Message,
} from './vhost-user-protocol.js';
import { SplitVirtqueue, type Chain } from './virtqueue.js';
import {
  processScheduler,
  resolveQueueBudget,
  type QueueBudget,
  type QueueScheduler,
  type ScheduledQueue,
} from './scheduler.js';

/** Work done in one slice of a queue (see sliceSpent). */
interface Slice {
  taken: number;
  /** Chains, weighted by the bytes they bring. */
  cost: number;
  /** The cost at which the clock is read next. */
  nextClock: number;
  deadline: number;
}

/** Cost units between clock readings in a slice (see sliceSpent). */
const CLOCK_EVERY = 16;

import type { Logger } from '../common/log.js';

export interface DeviceIo extends RegionMapper {
  close(fd: number): void;
  /** Signals an eventfd (borrowed). */
  eventfdWrite(fd: number): void;
  /** Drains an eventfd (borrowed). */
  eventfdRead(fd: number): void;
  /** Calls `onReadable` whenever fd is readable (or once with an error when polling failed);
   * returns a stop function. Borrows fd. */
  watchReadable(fd: number, onReadable: (error?: Error) => void): () => void;
}

/** Counters of one device; models add to `responses` and `dropped` for their chains. */
export interface DeviceCounters {
  messages: number;
  messageErrors: number;
  kicks: number;
  chains: number;
  responses: number;
  dropped: number;
  notifications: number;
  warningsSuppressed: number;
}

/** What a model gets from the back-end it runs in. */
export interface DeviceContext {
  memory: GuestMemory;
  /** The back-end's logger (guest-caused warnings thinned out). */
  log: Logger;
  counters: DeviceCounters;
  /** Runs a queue now (a model with new work for the guest, e.g. input events to deliver). */
  runQueue(queue: number): void;
}

/**
 * One virtio device on the vhost-user machinery: its queues, feature bits, config space and
 * what a chain of each queue does. Must not throw for guest input (a throw stops the queue).
 */
export interface DeviceModel {
  readonly queueCount: number;
  /** Device-specific feature bits offered (the ring and vhost-user bits are added). */
  readonly deviceFeatures: bigint;
  /** The negotiated features (all bits) changed, also to 0 on reset. */
  featuresChanged(features: bigint): void;
  /** The whole config space as it reads now (GET_CONFIG takes a slice of it). */
  readConfig(): Uint8Array;
  /** The front-end wrote `data` at `offset` of the config space (SET_CONFIG). */
  writeConfig(offset: number, data: Uint8Array): void;
  /** Executes one chain of queue `queue`; returns the bytes written into it. */
  processChain(queue: number, chain: Chain): number;
  /**
   * Whether the model takes another chain of `queue` now (default: always). A device that
   * fills guest buffers only when it has something to say (virtio-input's event queue) leaves
   * them in the ring and calls `runQueue` when it does.
   */
  wantsChain?(queue: number): boolean;
  /** The device is reset (RESET_DEVICE, RESET_OWNER, SET_STATUS 0, dispose). */
  reset(): void;
  /** The memory table changed (regions added, removed or replaced). */
  memoryChanged(): void;
  /**
   * A request the generic back-end does not know (e.g. GPU_SET_SOCKET). Returns the reply
   * payload, null for no reply, or undefined when the model does not know it either.
   */
  handleRequest?(msg: Message, takeFd: () => number | null): Uint8Array | null | undefined;
}

interface Queue {
  vq: SplitVirtqueue;
  kickFd: number | null;
  callFd: number | null;
  errFd: number | null;
  stopWatch: (() => void) | null;
  started: boolean;
  enabled: boolean;
  problemLogged: string | null;
  /** While its chains run: a nested run (from an event listener) is deferred to the loop. */
  running: boolean;
  /** A nested run asked for more while running. */
  again: boolean;
  /** This queue as the scheduler sees it. */
  slot: ScheduledQueue;
  /** The running slice's budget, reset per slice (reused: a frame allocates nothing). */
  slice: Slice;
}

export interface VhostUserDeviceOptions<M extends DeviceModel> {
  io: DeviceIo;
  log: Logger;
  /** Builds the device model once the back-end's memory table and logger exist. */
  createModel: (context: DeviceContext) => M;
  /** While false, kicks are noted but queues are not run (e.g. waiting for QEMU's display info). */
  canProcess?: () => boolean;
  /**
   * Guest-caused warnings logged before thinning out to one in 1000 (a guest repeating a bad
   * command every frame must not flood the log). Default 200.
   */
  warnLimit?: number;
  /** How much one queue runs before it yields (see scheduler.ts). */
  budget?: Partial<QueueBudget>;
  /** The scheduler shared with the other devices (default: the process's). */
  scheduler?: QueueScheduler;
}

export class VhostUserDevice<M extends DeviceModel = DeviceModel> {
  readonly memory: GuestMemory;
  readonly model: M;
  readonly offeredFeatures: bigint;
  readonly offeredProtocolFeatures =
    ProtocolFeature.MQ |
    ProtocolFeature.REPLY_ACK |
    ProtocolFeature.CONFIG |
    ProtocolFeature.RESET_DEVICE |
    ProtocolFeature.CONFIGURE_MEM_SLOTS |
    ProtocolFeature.STATUS;
  features = 0n;
  protocolFeatures = 0n;
  status = 0;
  owner = false;
  readonly queues: Queue[] = [];
  readonly counters: DeviceCounters = {
    messages: 0,
    messageErrors: 0,
    kicks: 0,
    chains: 0,
    responses: 0,
    dropped: 0,
    notifications: 0,
    warningsSuppressed: 0,
  };
  /** Slices that ended with work left (the queue yielded to the other guests). */
  yields = 0;
  private disposed = false;
  private readonly budget: QueueBudget;
  private readonly scheduler: QueueScheduler;
  private warnings = 0;
  private readonly log: Logger;
  private readonly queueCount: number;

  constructor(private readonly options: VhostUserDeviceOptions<M>) {
    const { io } = options;
    this.budget = resolveQueueBudget(options.budget);
    this.scheduler = options.scheduler ?? processScheduler;
    const limit = options.warnLimit ?? 200;
    this.log = (level, message) => {
      if (level === 'warn' && ++this.warnings > limit) {
        if (this.warnings % 1000 !== 0) {
          this.counters.warningsSuppressed++;
          return;
        }
        message += ` (${this.counters.warningsSuppressed} warnings suppressed so far)`;
      }
      options.log(level, message);
    };
    this.memory = new GuestMemory(io, (fd) => io.close(fd));
    this.model = options.createModel({
      memory: this.memory,
      log: this.log,
      counters: this.counters,
      runQueue: (queue) => this.processQueue(queue),
    });
    this.queueCount = this.model.queueCount;
    this.offeredFeatures =
      Feature.VERSION_1 |
      Feature.VHOST_USER_F_PROTOCOL_FEATURES |
      Feature.RING_INDIRECT_DESC |
      Feature.RING_EVENT_IDX |
      Feature.RING_RESET |
      this.model.deviceFeatures;
    for (let i = 0; i < this.queueCount; i++) {
      this.queues.push({
        vq: new SplitVirtqueue(i),
        kickFd: null,
        callFd: null,
        errFd: null,
        stopWatch: null,
        started: false,
        enabled: false,
        problemLogged: null,
        running: false,
        slice: { taken: 0, cost: 0, nextClock: CLOCK_EVERY, deadline: 0 },
        again: false,
        slot: { runSlice: () => this.runSlice(i) },
      });
    }
    this.applyFeatures(0n);
  }

  /**
   * Handles one message (takes its fds) and returns the reply message to send, or null.
   * Never throws for bad input: errors are logged and, if asked, acknowledged as failures.
   */
  handle(msg: Message): Uint8Array | null {
    this.counters.messages++;
    const fds = [...msg.fds];
    const takeFd = (): number | null => fds.shift() ?? null;
    let reply: Uint8Array | null = null;
    let ok = true;
    try {
      if (this.disposed) throw new ProtocolError('device disposed');
      reply = this.dispatch(msg, takeFd);
    } catch (error) {
      if (!(error instanceof ProtocolError || error instanceof MemoryError)) throw error;
      ok = false;
      this.counters.messageErrors++;
      this.log('warn', `vhost-user ${requestName(msg.request)}: ${error.message}`);
    } finally {
      for (const fd of fds) this.options.io.close(fd);
    }
    if (reply) return encodeReply(msg.request, reply);
    if (msg.flags & Flags.NEED_REPLY && this.protocolFeatures & ProtocolFeature.REPLY_ACK) {
      return encodeReply(msg.request, u64Payload(ok ? 0n : 1n));
    }
    return null;
  }

  private queue(index: number): Queue {
    const queue = this.queues[index];
    if (!queue) throw new ProtocolError(`queue index ${index} (device has ${this.queueCount})`);
    return queue;
  }

  private dispatch(msg: Message, takeFd: () => number | null): Uint8Array | null {
    const payload = msg.payload;
    switch (msg.request) {
      case Request.GET_FEATURES:
        return u64Payload(this.offeredFeatures);
      case Request.SET_FEATURES: {
        // QEMU also sets ring features it was not offered (INDIRECT_DESC, EVENT_IDX,
        // RING_RESET); all of them are implemented, so take the value as is.
        this.applyFeatures(parseU64(payload));
        return null;
      }
      case Request.GET_PROTOCOL_FEATURES:
        return u64Payload(this.offeredProtocolFeatures);
      case Request.SET_PROTOCOL_FEATURES:
        this.protocolFeatures = parseU64(payload) & this.offeredProtocolFeatures;
        return null;
      case Request.SET_OWNER:
        this.owner = true;
        return null;
      case Request.RESET_OWNER:
      case Request.RESET_DEVICE:
        this.resetDevice();
        return null;
      case Request.SET_MEM_TABLE:
        this.setMemTable(payload, msg.fds.length, takeFd);
        return null;
      case Request.ADD_MEM_REG: {
        const region = parseSingleRegion(payload);
        const fd = takeFd();
        if (fd === null) throw new ProtocolError('ADD_MEM_REG without an fd');
        this.memory.add(region, fd);
        this.memoryChanged();
        return null;
      }
      case Request.REM_MEM_REG: {
        const region = this.memory.detach(parseSingleRegion(payload));
        if (!region) throw new ProtocolError('REM_MEM_REG of an unknown region');
        // Users of the old fd hear about the change while the fd is still open.
        this.memoryChanged();
        this.memory.release(region);
        return null;
      }
      case Request.GET_MAX_MEM_SLOTS:
        return u64Payload(BigInt(MAX_REGIONS));
      case Request.GET_QUEUE_NUM:
        return u64Payload(BigInt(this.queueCount));
      case Request.SET_VRING_NUM: {
        const state = parseVringState(payload);
        const queue = this.queue(state.index);
        if (state.num === 0 || state.num > 32768 || (state.num & (state.num - 1)) !== 0) {
          throw new ProtocolError(`queue size ${state.num}`);
        }
        queue.vq.size = state.num;
        queue.vq.invalidate();
        return null;
      }
      case Request.SET_VRING_ADDR: {
        const addr = parseVringAddr(payload);
        const queue = this.queue(addr.index);
        const desc = toSafeNumber(addr.descUser);
        const avail = toSafeNumber(addr.availUser);
        const used = toSafeNumber(addr.usedUser);
        if (desc === null || avail === null || used === null)
          throw new ProtocolError('ring address beyond 2^53');
        queue.vq.descUser = desc;
        queue.vq.availUser = avail;
        queue.vq.usedUser = used;
        queue.vq.invalidate();
        return null;
      }
      case Request.SET_VRING_BASE: {
        const state = parseVringState(payload);
        this.queue(state.index).vq.setBase(state.num);
        return null;
      }
      case Request.GET_VRING_BASE: {
        const state = parseVringState(payload);
        const queue = this.queue(state.index);
        this.stopQueue(queue);
        return encodeVringState({ index: state.index, num: queue.vq.lastAvailIdx });
      }
      case Request.SET_VRING_KICK: {
        const request = parseVringFd(payload);
        const queue = this.queue(request.index);
        const fd = request.noFd ? null : takeFd();
        if (!request.noFd && fd === null) throw new ProtocolError('SET_VRING_KICK without an fd');
        this.replaceKick(queue, fd);
        return null;
      }
      case Request.SET_VRING_CALL: {
        const request = parseVringFd(payload);
        const queue = this.queue(request.index);
        const fd = request.noFd ? null : takeFd();
        if (queue.callFd !== null) this.options.io.close(queue.callFd);
        queue.callFd = fd;
        return null;
      }
      case Request.SET_VRING_ERR: {
        const request = parseVringFd(payload);
        const queue = this.queue(request.index);
        const fd = request.noFd ? null : takeFd();
        if (queue.errFd !== null) this.options.io.close(queue.errFd);
        queue.errFd = fd;
        return null;
      }
      case Request.SET_VRING_ENABLE: {
        const state = parseVringState(payload);
        const queue = this.queue(state.index);
        queue.enabled = state.num === 1;
        if (queue.enabled) this.processQueue(state.index);
        return null;
      }
      case Request.GET_CONFIG: {
        const request = parseConfig(payload);
        const config = this.model.readConfig();
        const data = new Uint8Array(request.size);
        if (request.offset < config.length) {
          data.set(
            config.subarray(request.offset, Math.min(config.length, request.offset + request.size)),
          );
        }
        return encodeConfig({ ...request, data });
      }
      case Request.SET_CONFIG: {
        const request = parseConfig(payload);
        this.model.writeConfig(request.offset, request.data);
        return null;
      }
      case Request.SET_STATUS: {
        const status = Number(parseU64(payload) & 0xffn);
        if (status === 0 && this.status !== 0) {
          // QEMU resets the device this way on every stop (vhost_dev_stop): the guest
          // re-creates its resources on the next start.
          this.log('info', 'device status reset: dropping resources');
          this.model.reset();
        }
        this.status = status;
        return null;
      }
      case Request.GET_STATUS:
        return u64Payload(BigInt(this.status));
      default: {
        const reply = this.model.handleRequest?.(msg, takeFd);
        if (reply === undefined) throw new ProtocolError('unsupported request');
        return reply;
      }
    }
  }

  private applyFeatures(features: bigint): void {
    this.features = features;
    for (const queue of this.queues) {
      queue.vq.eventIdx = (features & Feature.RING_EVENT_IDX) !== 0n;
      queue.vq.indirect = (features & Feature.RING_INDIRECT_DESC) !== 0n;
      // Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled (vhost-user.rst).
      if (!(features & Feature.VHOST_USER_F_PROTOCOL_FEATURES)) queue.enabled = true;
    }
    this.model.featuresChanged(features);
  }

  private setMemTable(payload: Uint8Array, fdCount: number, takeFd: () => number | null): void {
    const regions = parseMemTable(payload);
    if (fdCount !== regions.length) {
      throw new ProtocolError(`${regions.length} regions with ${fdCount} fds`);
    }
    // All or nothing: a table with one bad region changes nothing (every fd of the message is
    // closed, nothing of it stays mapped, the previous table stays) and is answered as failed.
    const fds = regions.map(() => takeFd()!);
    const old = this.memory.detachAll();
    const added = [];
    try {
      for (let i = 0; i < regions.length; i++) {
        const fd = fds[i]!;
        fds[i] = -1; // add() owns it now, also when it fails
        added.push(this.memory.add(regions[i]!, fd));
      }
    } catch (error) {
      for (const fd of fds) if (fd >= 0) this.options.io.close(fd);
      this.memory.detachAll();
      for (const region of added) this.memory.release(region);
      this.memory.restore(old);
      throw error;
    }
    this.memoryChanged();
    for (const region of old) this.memory.release(region);
    this.log(
      'debug',
      `memory table: ${this.memory.regions
        .map((r) => `gpa 0x${r.guestAddr.toString(16)}+0x${r.size.toString(16)}`)
        .join(', ')}`,
    );
  }

  private memoryChanged(): void {
    for (const queue of this.queues) queue.vq.invalidate();
    this.model.memoryChanged();
    for (let i = 0; i < this.queueCount; i++) this.processQueue(i);
  }

  private replaceKick(queue: Queue, fd: number | null): void {
    queue.stopWatch?.();
    queue.stopWatch = null;
    if (queue.kickFd !== null) this.options.io.close(queue.kickFd);
    queue.kickFd = fd;
    queue.started = true;
    queue.problemLogged = null;
    const index = queue.vq.index;
    if (fd !== null) {
      queue.stopWatch = this.options.io.watchReadable(fd, (error) => {
        if (error) {
          this.log('error', `queue ${index}: watching the kick fd failed: ${error.message}`);
          return;
        }
        if (queue.kickFd === null) return;
        this.options.io.eventfdRead(queue.kickFd);
        this.counters.kicks++;
        this.processQueue(index);
      });
    } else {
      this.log(
        'warn',
        `queue ${index}: no kick fd (polling is not supported); runs on other events`,
      );
    }
    this.processQueue(index);
  }

  private stopQueue(queue: Queue): void {
    this.scheduler.remove(queue.slot);
    queue.stopWatch?.();
    queue.stopWatch = null;
    if (queue.kickFd !== null) this.options.io.close(queue.kickFd);
    queue.kickFd = null;
    queue.started = false;
    queue.vq.invalidate();
  }

  /** Runs every queue that can run (after the processing gate opens). */
  kickAll(): void {
    for (let i = 0; i < this.queueCount; i++) this.processQueue(i);
  }

  /**
   * The queue has work (a kick, a memory or gate change): its first slice runs now unless it
   * already waits for the scheduler's next round (see scheduler.ts).
   */
  processQueue(index: number): void {
    const queue = this.queues[index]!;
    if (!this.canRun(queue)) return;
    // The queue's Chain is reused per pop: a listener that makes this queue run again while a
    // chain is in use only marks it; the running slice goes round once more.
    if (queue.running) {
      queue.again = true;
      return;
    }
    this.scheduler.kick(queue.slot);
  }

  private canRun(queue: Queue): boolean {
    if (this.disposed || !queue.started || !queue.enabled) return false;
    return !this.options.canProcess || this.options.canProcess();
  }

  /** One bounded slice of a queue; true when it stopped with chains left. */
  private runSlice(index: number): boolean {
    const queue = this.queues[index]!;
    if (!this.canRun(queue) || queue.running) return false;
    queue.running = true;
    const slice = queue.slice;
    slice.taken = 0;
    slice.cost = 0;
    slice.nextClock = CLOCK_EVERY;
    slice.deadline = 0;
    try {
      let more: boolean;
      do {
        queue.again = false;
        more = this.runQueue(queue, index, slice);
      } while (!more && queue.again && !this.disposed);
      return more;
    } catch (error) {
      // A bug, not guest input (that is handled where it is parsed): stop this queue rather
      // than let the exception unwind into the event loop.
      queue.vq.broken = `internal error: ${String(error)}`;
      this.log('error', `queue ${index} stopped by ${(error as Error).stack ?? String(error)}`);
      return false;
    } finally {
      queue.running = false;
    }
  }

  /**
   * Whether the slice's budget is spent. The clock is read only every CLOCK_EVERY units of
   * cost (a kick with a few commands reads none: per-kick timing cost more than some commands).
   * A chain costs one unit plus one per 4 KiB it brings: a 256 KiB ATTACH_BACKING takes about
   * a millisecond, and sixteen of them between two readings held the other guests for 40 ms.
   */
  private sliceSpent(slice: Slice): boolean {
    if (slice.taken >= this.budget.chainsPerSlice) return true;
    if (slice.cost < slice.nextClock) return false;
    slice.nextClock = slice.cost + CLOCK_EVERY;
    const now = performance.now();
    if (slice.deadline === 0) {
      // First reading: the slice started about CLOCK_EVERY chains ago; count from here.
      slice.deadline = now + this.budget.sliceMs;
      return false;
    }
    return now >= slice.deadline;
  }

  /**
   * Takes available chains, executes them, returns them and notifies once, until the ring is
   * empty (false) or the slice's budget is spent (true: the scheduler runs the rest later).
   */
  private runQueue(queue: Queue, index: number, slice: Slice): boolean {
    const problem = queue.vq.resolve(this.memory);
    if (problem) {
      if (queue.problemLogged !== problem) this.log('warn', `queue ${index}: ${problem}`);
      queue.problemLogged = problem;
      return false;
    }
    let pushed = 0;
    let more = false;
    for (;;) {
      if (this.model.wantsChain && !this.model.wantsChain(index)) break;
      if (this.sliceSpent(slice)) {
        more = true;
        this.yields++;
        break;
      }
      const result = queue.vq.pop(this.memory);
      if (result.kind === 'empty') {
        if (queue.vq.armKick()) continue;
        break;
      }
      if (result.kind === 'broken') {
        if (queue.problemLogged !== result.reason) {
          this.log('error', `queue ${index} stopped: ${result.reason}`);
          if (queue.errFd !== null) this.options.io.eventfdWrite(queue.errFd);
        }
        queue.problemLogged = result.reason;
        break;
      }
      slice.taken++;
      this.counters.chains++;
      if (result.kind === 'bad') {
        this.counters.dropped++;
        this.log('warn', `queue ${index}: dropped chain ${result.head}: ${result.reason}`);
        queue.vq.push(result.head, 0);
        pushed++;
        continue;
      }
      slice.cost += 1 + (result.chain.readableLength >>> 12);
      const written = this.model.processChain(index, result.chain);
      // A listener may have ended the session while the command ran: the chain's memory is gone.
      if (this.disposed) return false;
      queue.vq.push(result.chain.head, written);
      pushed++;
    }
    if (pushed > 0 && queue.vq.needsNotify() && queue.callFd !== null) {
      this.counters.notifications++;
      this.options.io.eventfdWrite(queue.callFd);
    }
    return more;
  }

  /** Stops every queue and closes its fds; forgets features and device state (memory stays). */
  resetDevice(): void {
    for (const queue of this.queues) {
      this.stopQueue(queue);
      if (queue.callFd !== null) this.options.io.close(queue.callFd);
      if (queue.errFd !== null) this.options.io.close(queue.errFd);
      queue.callFd = queue.errFd = null;
      queue.vq.size = 0;
      queue.vq.descUser = queue.vq.availUser = queue.vq.usedUser = null;
      queue.vq.setBase(0);
      queue.enabled = false;
    }
    this.status = 0;
    this.applyFeatures(0n);
    this.model.reset();
  }

  /** Ends the session: resets and releases the memory table. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.resetDevice();
    this.disposed = true;
    this.memory.clear();
    this.model.memoryChanged();
  }
}
