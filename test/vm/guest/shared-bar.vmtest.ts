// Runs inside the kernel-tier VM (real /dev/udmabuf), started by test/vm/shared-bar.test.ts:
// the shared BAR memfd guestfb owns -> udmabuf -> dma-buf -> zwp_linux_dmabuf_v1 in the example
// compositor. The test plays QEMU's ivshmem-doorbell and the guest: it takes the BAR fd and the
// doorbell eventfd from guestfb's ivshmem server, writes barwriter's header and pattern, rings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../../native/fd.js';
import { createCompositor } from '../../../examples/compositor/index.js';
import { decodePng } from '../../../examples/compositor/render/screenshot.js';
import { expectedPixel } from '../../../examples/guest/pattern.js';
import { createGuestfbPlugin } from '../../../plugin/index.js';
import { DrmFormat } from '../../../plugin/common/formats.js';
import {
  createSharedBarSource,
  writeBarHeader,
  type HeaderFields,
} from '../../../plugin/sources/shared-bar/index.js';
import { settleUntil } from '../../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';
const [width, height] = [640, 480];
const fbOffset = 8192;

/** Reads `count` ivshmem server messages (8 bytes each, fd with the first byte). */
function readMessages(conn: number, count: number): { value: number; fd: number | null }[] {
  const out: { value: number; fd: number | null }[] = [];
  let pending: number[] = [];
  let pendingFd: number | null = null;
  while (out.length < count) {
    assert.ok(fd.pollReadable(conn, 20_000), 'server message');
    const chunk = fd.unixRecv(conn, 8 - pending.length);
    if (!chunk) continue;
    assert.ok(chunk.data.length > 0, 'server hung up');
    if (chunk.fds.length) pendingFd = chunk.fds[0]!;
    pending = [...pending, ...chunk.data];
    if (pending.length === 8) {
      const value = Number(new DataView(new Uint8Array(pending).buffer).getBigInt64(0, true));
      out.push({ value, fd: pendingFd });
      pending = [];
      pendingFd = null;
    }
  }
  return out;
}

/** barwriter's pattern for `frame` (bars + counter), straight into the BAR mapping. */
function drawFrame(bar: ArrayBuffer, frame: number): void {
  const pixels = new Uint32Array(bar, fbOffset, width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      pixels[y * width + x] =
        (0xff000000 | expectedPixel({ width, height, outputIndex: 0, frame }, x, y)) >>> 0;
    }
  }
}

function mismatches(png: Buffer, frame: number): number {
  const image = decodePng(png);
  assert.deepEqual([image.width, image.height], [width, height]);
  let differing = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (image.pixel(x, y) !== expectedPixel({ width, height, outputIndex: 0, frame }, x, y)) {
        differing++;
      }
    }
  }
  return differing;
}

test('/dev/udmabuf is there', () => {
  assert.equal(statSync('/dev/udmabuf').isCharacterDevice(), true);
});

test('the ivshmem BAR memfd reaches the compositor as a dma-buf: pixel-exact, 0 bytes copied', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bar-vm-'));
  const baseline = fd.openFdCount();
  const logs: string[] = [];
  const socketPath = path.join(dir, 'ivshmem.sock');
  // Doorbells only: in this slow guest the sequence poll's timer can fire before the doorbell's
  // watch in the same loop turn and take the frame, so the doorbell path would go untested.
  const source = createSharedBarSource({
    ivshmemSocket: socketPath,
    pollMs: 0,
    log: (_level, m) => logs.push(m),
  });
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width, height, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'vm', source }],
    log: (line) => logs.push(line),
  });
  const conn = fd.unixConnect(socketPath);
  let messages: { value: number; fd: number | null }[] = [];
  let bar: ArrayBuffer | null = null;
  try {
    assert.equal(await compositor.use(plugin), true, logs.join('; '));
    await settleUntil(plugin, () => source.server!.peers().length === 1, 'the ivshmem client');
    messages = readMessages(conn, 5);
    assert.deepEqual(
      messages.map((m) => m.value),
      [0, 1, -1, 0, 1],
    );
    bar = fd.mmap(messages[2]!.fd!, 0, source.barSize, true);
    const doorbell = messages[3]!.fd!;
    const header = new DataView(bar);
    const fields: HeaderFields = {
      fourcc: DrmFormat.XRGB8888,
      width,
      height,
      stride: width * 4,
      offset: fbOffset,
      sequence: 2,
    };
    drawFrame(bar, 0);
    writeBarHeader(header, fields);
    fd.eventfdWrite(doorbell, 1);
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 1, 'the first frame');
    const window = plugin.presenter!.windows()[0]!;
    await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    const buffer = window.buffer;
    assert.equal(buffer?.path, 'dmabuf', logs.join('; '));
    assert.equal(mismatches(compositor.screenshot(OUTPUT), 0), 0);

    // The next frame in the same pages, with damage: same wl_buffer, same dma-buf, no copy.
    drawFrame(bar, 1);
    writeBarHeader(header, {
      ...fields,
      sequence: 4,
      damage: [{ x: 0, y: height - 16, width: 256, height: 16 }],
    });
    fd.eventfdWrite(doorbell, 1);
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 2, 'the second frame');
    await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    assert.equal(window.buffer, buffer, 'the same wl_buffer');
    assert.equal(mismatches(compositor.screenshot(OUTPUT), 1), 0);

    const stats = plugin.stats();
    t.diagnostic(`plugin: ${JSON.stringify(stats)}; source: ${JSON.stringify(source.stats())}`);
    assert.equal(stats.bytesCopied, 0);
    assert.equal(stats.dmabufsLive, 1);
    assert.equal(stats.fallbackReason, null);
    assert.equal(source.stats().bytesCopied, 0);
    assert.equal(source.stats().doorbellFrames, 2);
    assert.equal(source.stats().polledFrames, 0);
  } finally {
    if (bar) fd.munmap(bar);
    for (const m of messages) if (m.fd !== null) fd.close(m.fd);
    fd.close(conn);
    await settleUntil(plugin, () => source.server!.peers().length === 0, 'the disconnect');
    plugin.stop();
    await compositor.close();
    source.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});
