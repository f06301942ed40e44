/**
 * A synthetic QEMU front-end plus guest for the frame-cost benchmark: it plays QEMU's side of
 * vhost-user over real sockets (guest RAM is a memfd, kicks and interrupts are eventfds) and a
 * guest driver's side of the control virtqueue, so guestfb's back-end runs exactly the code it
 * runs under QEMU, without a VM's noise. One process drives any number of guests.
 *
 * Per guest frame it does what the Linux virtio-gpu driver does for a dirtyfb: a
 * TRANSFER_TO_HOST_2D chain and a RESOURCE_FLUSH chain (full-frame damage, each an indirect
 * descriptor), one kick, and it waits for the used-buffer interrupt (EVENT_IDX on, as QEMU
 * negotiates it).
 *
 * Driven over stdin/stdout, one line each:
 *   (argv) --socket P [--socket P ...] --size WxH
 *   → "ready" once every guest shows its framebuffer
 *   ← "run N FPS" (FPS 0: each frame as soon as the previous one completed)
 *   → "done {json}" with the kick → interrupt round trip per frame (µs, p50/p99/max)
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { fd } from '../../native/fd.js';
import {
  Cmd,
  DISPLAY_INFO_SIZE,
  encodeMemEntries,
  encodeRequest,
  HDR_SIZE,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeMemTable,
  encodeMessage,
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

const PAGE = 4096;
const QUEUE_SIZE = 64;
const RESOURCE_ID = 1;
const FORMAT_B8G8R8X8 = 2;

function readable(socket: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = fd.watchReadable(socket, () => {
      stop();
      resolve();
    });
  });
}

/** The front-end end of a vhost-user socket: requests with NEED_REPLY, replies read back. */
class FrontEnd {
  private readonly reader = new FrameReader((x) => fd.close(x), 1 << 20, true);
  private readonly queue: Message[] = [];
  constructor(readonly socket: number) {}

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
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export class SyntheticGuest {
  private readonly ram: Uint8Array;
  private readonly mapping: ArrayBuffer;
  private readonly memfd: number;
  private readonly kick = fd.eventfd(0);
  private readonly call = fd.eventfd(0);
  private readonly alloc: Allocator;
  private readonly ring: RingDriver;
  private front: FrontEnd | null = null;
  private transferGpa = 0;
  private flushGpa = 0;
  private responseGpa = 0;
  private stopWatch: (() => void) | null = null;
  private onInterrupt: (() => void) | null = null;

  constructor(
    readonly socketPath: string,
    readonly width: number,
    readonly height: number,
  ) {
    const frameBytes = width * height * 4;
    // QEMU's pc layout (a hole below 1 MiB), the framebuffer, and room for rings and requests.
    const ramSize = Math.ceil((HIGH_START + 2 * frameBytes + (4 << 20)) / (2 << 20)) * (2 << 20);
    this.memfd = fd.memfdCreate('synthetic-guest-ram', true);
    fd.ftruncate(this.memfd, ramSize);
    this.mapping = fd.mmap(this.memfd, 0, ramSize, true);
    this.ram = new Uint8Array(this.mapping);
    this.alloc = new Allocator(HIGH_START, ramSize);
    this.ring = new RingDriver(this.ram, this.alloc, QUEUE_SIZE);
    this.alloc.mark();
    this.regions = ramRegions(ramSize);
  }

  private readonly regions: ReturnType<typeof ramRegions>;

  /** Connects, negotiates like QEMU, and brings up a scanned-out framebuffer. */
  async start(): Promise<void> {
    let socket = -1;
    for (let attempt = 0; ; attempt++) {
      try {
        socket = fd.unixConnect(this.socketPath);
        break;
      } catch (error) {
        if (attempt > 500) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    const front = new FrontEnd(socket);
    this.front = front;
    await front.call(Request.GET_FEATURES);
    const protocol = parseU64(await front.call(Request.GET_PROTOCOL_FEATURES));
    front.send(Request.SET_PROTOCOL_FEATURES, u64Payload(protocol));
    await front.call(Request.SET_OWNER);
    await front.call(
      Request.SET_FEATURES,
      u64Payload(
        Feature.VERSION_1 |
          Feature.VHOST_USER_F_PROTOCOL_FEATURES |
          Feature.RING_EVENT_IDX |
          Feature.RING_INDIRECT_DESC,
      ),
    );
    await front.call(Request.SET_MEM_TABLE, encodeMemTable(this.regions), [this.memfd, this.memfd]);
    await front.call(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: QUEUE_SIZE }));
    await front.call(Request.SET_VRING_BASE, encodeVringState({ index: 0, num: 0 }));
    const addr = new Uint8Array(40);
    const view = new DataView(addr.buffer);
    view.setBigUint64(8, BigInt(USER_BASE + this.ring.descGpa), true);
    view.setBigUint64(16, BigInt(USER_BASE + this.ring.usedGpa), true);
    view.setBigUint64(24, BigInt(USER_BASE + this.ring.availGpa), true);
    await front.call(Request.SET_VRING_ADDR, addr);
    await front.call(Request.SET_VRING_CALL, u64Payload(0n), [this.call]);
    await front.call(Request.SET_VRING_KICK, u64Payload(0n), [this.kick]);
    await front.call(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }));
    this.stopWatch = fd.watchReadable(this.call, () => {
      fd.eventfdRead(this.call);
      this.onInterrupt?.();
    });

    const { width: w, height: h } = this;
    await this.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), DISPLAY_INFO_SIZE);
    await this.expectOk(
      encodeRequest(Cmd.RESOURCE_CREATE_2D, [RESOURCE_ID, FORMAT_B8G8R8X8, w, h]),
    );
    const pages = Math.ceil((w * h * 4) / PAGE);
    const base = this.alloc.reserve(pages * PAGE, PAGE);
    for (let y = 0; y < h; y += 1)
      this.ram.fill(y & 0xff, base + y * w * 4, base + (y + 1) * w * 4);
    // One contiguous span: on a host without udmabuf the plugin then shows the guest memfd itself
    // through wl_shm (the zero-copy stand-in); with udmabuf it becomes a dma-buf.
    const entries = [{ addr: base, length: pages * PAGE }];
    await this.expectOk(
      encodeRequest(
        Cmd.RESOURCE_ATTACH_BACKING,
        [RESOURCE_ID, entries.length],
        {},
        encodeMemEntries(entries),
      ),
    );
    await this.expectOk(encodeRequest(Cmd.SET_SCANOUT, [0, 0, w, h, 0, RESOURCE_ID]));
    // The per-frame requests live at fixed guest addresses, written once.
    const transfer = encodeRequest(Cmd.TRANSFER_TO_HOST_2D, [0, 0, w, h, 0, 0, RESOURCE_ID, 0]);
    const flush = encodeRequest(Cmd.RESOURCE_FLUSH, [0, 0, w, h, RESOURCE_ID, 0]);
    this.transferGpa = this.alloc.reserve(transfer.length, 64);
    this.ram.set(transfer, this.transferGpa);
    this.flushGpa = this.alloc.reserve(flush.length, 64);
    this.ram.set(flush, this.flushGpa);
    this.responseGpa = this.alloc.reserve(2 * HDR_SIZE, 64);
    await this.frame();
  }

  private async command(request: Uint8Array, responseSize: number): Promise<Uint8Array> {
    const reqGpa = this.alloc.take(request.length, 8);
    this.ram.set(request, reqGpa);
    const respGpa = this.alloc.take(responseSize, 8);
    this.ring.addChain([
      { gpa: reqGpa, length: request.length, write: false },
      { gpa: respGpa, length: responseSize, write: true },
    ]);
    await this.kickAndWait(1);
    this.alloc.reset();
    return this.ram.slice(respGpa, respGpa + responseSize);
  }

  private async expectOk(request: Uint8Array): Promise<void> {
    const response = await this.command(request, HDR_SIZE);
    const type = new DataView(response.buffer).getUint32(0, true);
    if (type !== Resp.OK_NODATA)
      throw new Error(`command refused: response 0x${type.toString(16)}`);
  }

  /** Publishes what was added, kicks once and resolves when `count` chains came back used. */
  private kickAndWait(count: number): Promise<void> {
    const target = (this.ring.usedIdx() + count) & 0xffff;
    // EVENT_IDX: interrupt me when the last of them is used.
    this.ring.setUsedEvent((target - 1) & 0xffff);
    return new Promise((resolve) => {
      const check = () => {
        if (this.ring.usedIdx() !== target) return false;
        this.ring.takeUsed();
        this.onInterrupt = null;
        resolve();
        return true;
      };
      this.onInterrupt = check;
      fd.eventfdWrite(this.kick);
    });
  }

  /**
   * One guest frame: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole framebuffer, one kick.
   * Each command is one indirect descriptor, as Linux's virtio ring adds a request and its
   * response when VIRTIO_RING_F_INDIRECT_DESC is negotiated (QEMU always negotiates it).
   */
  frame(): Promise<void> {
    this.alloc.reset(); // the indirect tables of the previous frame are free again
    this.ring.addIndirect([
      { gpa: this.transferGpa, length: HDR_SIZE + 32, write: false },
      { gpa: this.responseGpa, length: HDR_SIZE, write: true },
    ]);
    this.ring.addIndirect([
      { gpa: this.flushGpa, length: HDR_SIZE + 24, write: false },
      { gpa: this.responseGpa + HDR_SIZE, length: HDR_SIZE, write: true },
    ]);
    return this.kickAndWait(2);
  }

  close(): void {
    this.stopWatch?.();
    if (this.front) fd.close(this.front.socket);
    fd.close(this.kick);
    fd.close(this.call);
    fd.munmap(this.mapping);
    fd.close(this.memfd);
  }
}

/** Runs `frames` frames on every guest at `fps` (0 = back to back); round trips in µs. */
async function run(guests: SyntheticGuest[], frames: number, fps: number) {
  const roundTrips = new Float64Array(frames * guests.length);
  let n = 0;
  const periodNs = fps > 0 ? BigInt(Math.round(1e9 / fps)) : 0n;
  const start = process.hrtime.bigint();
  await Promise.all(
    guests.map(async (guest, index) => {
      // Guests start staggered over one period, as independent VMs would.
      const offset = periodNs > 0n ? (periodNs * BigInt(index)) / BigInt(guests.length) : 0n;
      for (let i = 0; i < frames; i++) {
        if (periodNs > 0n) {
          const due = start + offset + periodNs * BigInt(i);
          const wait = Number(due - process.hrtime.bigint()) / 1e6;
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
        const sent = process.hrtime.bigint();
        await guest.frame();
        roundTrips[n++] = Number(process.hrtime.bigint() - sent) / 1000;
      }
    }),
  );
  const sorted = roundTrips.subarray(0, n).sort();
  return {
    frames: n,
    wallMs: Number(process.hrtime.bigint() - start) / 1e6,
    roundTripUs: {
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted[n - 1] ?? 0,
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: 'string', multiple: true },
      size: { type: 'string' },
    },
  });
  const [width, height] = (values.size ?? '1280x800').split('x').map(Number);
  const guests = (values.socket ?? []).map((socket) => new SyntheticGuest(socket, width!, height!));
  for (const guest of guests) await guest.start();
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [verb, frames, fps] = line.split(' ');
    if (verb === 'run') {
      const result = await run(guests, Number(frames), Number(fps));
      process.stdout.write(`done ${JSON.stringify(result)}\n`);
    }
  }
  for (const guest of guests) guest.close();
}

main().catch((error: unknown) => {
  process.stderr.write(
    `synthetic guest: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
