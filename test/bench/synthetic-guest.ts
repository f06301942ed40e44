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
 *
 * The vhost-user front-end and guest driver are the tests' (test/helpers/vhost-frontend.ts),
 * set up as QEMU does for this device: EVENT_IDX, one 64-entry control queue.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import {
  Cmd,
  DISPLAY_INFO_SIZE,
  encodeRequest,
  HDR_SIZE,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { HIGH_START } from '../unit/virtio-gpu-harness.js';
import { TestGuest } from '../helpers/vhost-frontend.js';

const QUEUE_SIZE = 64;
const RESOURCE_ID = 1;

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export class SyntheticGuest {
  private readonly guest: TestGuest;
  private transferGpa = 0;
  private flushGpa = 0;
  private responseGpa = 0;

  constructor(
    readonly socketPath: string,
    readonly width: number,
    readonly height: number,
  ) {
    const frameBytes = width * height * 4;
    // QEMU's pc layout (a hole below 1 MiB), the framebuffer, and room for rings and requests.
    const ramSize = Math.ceil((HIGH_START + 2 * frameBytes + (4 << 20)) / (2 << 20)) * (2 << 20);
    this.guest = new TestGuest(socketPath, {
      ramBytes: ramSize,
      queueSize: QUEUE_SIZE,
      eventIdx: true,
      queues: 1,
      memfdName: 'synthetic-guest-ram',
    });
  }

  /** Connects, negotiates like QEMU, and brings up a scanned-out framebuffer. */
  async start(): Promise<void> {
    const guest = this.guest;
    await guest.connect();
    const { width: w, height: h } = this;
    await guest.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), DISPLAY_INFO_SIZE);
    // One contiguous span: on a host without udmabuf the plugin then shows the guest memfd itself
    // through wl_shm (the zero-copy stand-in); with udmabuf it becomes a dma-buf.
    const base = await guest.createResource(RESOURCE_ID, w, h);
    for (let y = 0; y < h; y += 1)
      guest.ram.fill(y & 0xff, base + y * w * 4, base + (y + 1) * w * 4);
    await guest.expect(encodeRequest(Cmd.SET_SCANOUT, [0, 0, w, h, 0, RESOURCE_ID]));
    // The per-frame requests live at fixed guest addresses, written once.
    const transfer = encodeRequest(Cmd.TRANSFER_TO_HOST_2D, [0, 0, w, h, 0, 0, RESOURCE_ID, 0]);
    const flush = encodeRequest(Cmd.RESOURCE_FLUSH, [0, 0, w, h, RESOURCE_ID, 0]);
    this.transferGpa = guest.alloc.reserve(transfer.length, 64);
    guest.ram.set(transfer, this.transferGpa);
    this.flushGpa = guest.alloc.reserve(flush.length, 64);
    guest.ram.set(flush, this.flushGpa);
    this.responseGpa = guest.alloc.reserve(2 * HDR_SIZE, 64);
    await this.frame();
  }

  /**
   * One guest frame: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole framebuffer, one kick.
   * Each command is one indirect descriptor, as Linux's virtio ring adds a request and its
   * response when VIRTIO_RING_F_INDIRECT_DESC is negotiated (QEMU always negotiates it).
   */
  frame(): Promise<void> {
    const guest = this.guest;
    guest.alloc.reset(); // the indirect tables of the previous frame are free again
    guest.rings[0].addIndirect([
      { gpa: this.transferGpa, length: HDR_SIZE + 32, write: false },
      { gpa: this.responseGpa, length: HDR_SIZE, write: true },
    ]);
    guest.rings[0].addIndirect([
      { gpa: this.flushGpa, length: HDR_SIZE + 24, write: false },
      { gpa: this.responseGpa + HDR_SIZE, length: HDR_SIZE, write: true },
    ]);
    return guest.kickAndWait(0, 2);
  }

  close(): void {
    this.guest.close();
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
