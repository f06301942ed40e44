// Runs inside the kernel-tier VM (real /dev/udmabuf), started by test/vm/nested-qemu.test.ts:
// the headline path with a real guest. QEMU 10 runs here, in the VM, and boots the test guest
// with vhost-user-gpu-pci bound to guestfb's back-end and an ivshmem-doorbell BAR served by
// guestfb. One boot serves every test below, in order:
//   1. the example compositor with guestfb loaded: the guest's drawpattern frame reaches it as
//      a udmabuf dma-buf made from the guest's own memfd ranges (recorded at the ioctl), 0 bytes
//      copied, the screenshot pixel-exact with the guest's frame counter;
//   2. the same compositor, the ivshmem BAR written by barwriter: dma-buf, 0 bytes, exact;
//   3. the same guest through guestfb standalone into weston 14 (GL renderer): weston's own
//      capture pixel-exact, 0 bytes copied.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../../native/fd.js';
import { createCompositor, type Compositor } from '../../../examples/compositor/index.js';
import {
  bootGuest,
  ensureGuest,
  ensureQemu,
  type QemuProcess,
} from '../../../examples/qemu/qemu.js';
import { comparePattern, decodeCounter, type RgbImage } from '../../../examples/guest/pattern.js';
import { createGuestfbPlugin, runStandalone, type GuestfbPlugin } from '../../../plugin/index.js';
import { nativeUdmabufSyscalls, UdmabufExporter } from '../../../plugin/dmabuf/exporter.js';
import type { UdmabufRange } from '../../../native/fd.js';
import {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
} from '../../../plugin/sources/virtio-gpu/index.js';
import {
  createSharedBarSource,
  type SharedBarSource,
} from '../../../plugin/sources/shared-bar/index.js';
import { arrange, screenshot, windowImage, windowsByTitle } from '../../e2e/helpers/windows.js';
import { guestContext, removeWorkDir, stopAll, withContext } from '../../e2e/helpers/context.js';
import { settleUntil } from '../../helpers/wait.js';
import { cachedWeston14 } from '../weston14.js';
import { startWeston, WestonProbe, type CapturedImage } from './weston14-session.js';

// Small frames: everything below runs under TCG, the guest's QEMU inside the VM's.
const [WIDTH, HEIGHT] = [640, 480];
const GPU_FRAMES = 6;
const [BAR_WIDTH, BAR_HEIGHT] = [320, 240];
const BAR_FRAMES = 4;
const OUTPUT = 'HEADLESS-1';
const GAP = 16;
const GPU_TITLE = 'vm — vm';
const BAR_TITLE = 'bar — bar';
/** The nested boot is the slow part (minutes on a loaded machine); everything waits on it. */
const WAIT_MS = 15 * 60_000;

let workDir: string;
let qemu: QemuProcess;
let backend: VhostUserGpuBackend;
let bar: SharedBarSource;
let exporter: UdmabufExporter;
let compositor: Compositor;
let plugin: GuestfbPlugin;
const logs: string[] = [];
/** Every dma-buf the presenter's exporter made (UDMABUF_CREATE or _LIST), as the kernel got it. */
const udmabufLists: { ranges: UdmabufRange[]; dmabufFd: number }[] = [];
let flushes = 0;
let bootStarted = 0;
let baselineFds = 0;

function debug(): string {
  return guestContext('guestfb log', logs, qemu);
}

/** Waits for `condition` with the plugin's roundtrips between checks; a timeout says why. */
async function until(condition: () => boolean, what: string, limitMs = WAIT_MS): Promise<void> {
  await settleUntil(plugin, condition, what, { limitMs, intervalMs: 20 }).catch(
    (error: unknown) => {
      throw withContext(error, debug());
    },
  );
}

/** Waits until a window's committed frame came back through its frame callback. */
async function settled(title: string): Promise<void> {
  const window = plugin.presenter!.windows().find((w) => w.title === title);
  assert.ok(window, `guestfb has a window "${title}"`);
  await until(() => !window.pacer.waitingForFrame, `the frame callback of "${title}"`);
}

function capture(title: string): RgbImage {
  arrange(
    compositor,
    new Map([
      [GPU_TITLE, { x: 0, y: 0 }],
      [BAR_TITLE, { x: WIDTH + GAP, y: 0 }],
    ]),
  );
  const window = windowsByTitle(compositor).get(title);
  assert.ok(window, `the compositor maps "${title}"`);
  return windowImage(screenshot(compositor, OUTPUT), window);
}

function toRgb(image: CapturedImage): RgbImage {
  const rgb = Buffer.alloc(image.width * image.height * 3);
  for (let i = 0; i < image.width * image.height; i++) {
    const word = image.words[i]!;
    rgb[i * 3] = (word >> 16) & 0xff;
    rgb[i * 3 + 1] = (word >> 8) & 0xff;
    rgb[i * 3 + 2] = word & 0xff;
  }
  return { width: image.width, height: image.height, rgb };
}

/** The image equals the documented pattern for the frame its own counter strip names. */
function assertExactFrame(image: RgbImage, expectedFrame: number, what: string): void {
  const counter = decodeCounter(image);
  assert.equal(counter, expectedFrame, `${what}: frame counter`);
  const result = comparePattern(image, {
    width: image.width,
    height: image.height,
    outputIndex: 0,
    frame: counter,
  });
  assert.equal(
    result.mismatches,
    0,
    `${what}: ${result.mismatches} pixels differ from frame ${counter}; first ${JSON.stringify(result.first)}`,
  );
}

before(async () => {
  assert.equal(statSync('/dev/udmabuf').isCharacterDevice(), true, '/dev/udmabuf in the VM');
  const progress = (message: string) => process.stderr.write(`nested: ${message}\n`);
  const tier = await ensureQemu(progress);
  const guest = await ensureGuest(progress);
  workDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-nested-'));
  baselineFds = fd.openFdCount();

  backend = createVhostUserGpuBackend({
    socketPath: path.join(workDir, 'gpu.sock'),
    role: 'listen',
    width: WIDTH,
    height: HEIGHT,
    name: 'vm',
    log: (level, message) => logs.push(`gpu ${level}: ${message}`),
  });
  backend.on('flush', () => flushes++);
  bar = createSharedBarSource({
    ivshmemSocket: path.join(workDir, 'ivshmem.sock'),
    name: 'bar',
    log: (_level, message) => logs.push(`bar: ${message}`),
  });
  // The presenter's exporter, with the system calls that make dma-bufs recorded: the
  // test then knows which pages the compositor got, not just that some dma-buf was made.
  exporter = UdmabufExporter.open({
    syscalls: {
      ...nativeUdmabufSyscalls,
      create: (device, range) => {
        const dmabufFd = nativeUdmabufSyscalls.create(device, range);
        udmabufLists.push({ ranges: [{ ...range }], dmabufFd });
        return dmabufFd;
      },
      createList: (device, ranges) => {
        const dmabufFd = nativeUdmabufSyscalls.createList(device, ranges);
        udmabufLists.push({ ranges: ranges.map((r) => ({ ...r })), dmabufFd });
        return dmabufFd;
      },
    },
  });
  compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 2 * WIDTH + GAP, height: HEIGHT, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  plugin = createGuestfbPlugin({
    sources: [
      { name: 'vm', source: backend },
      { name: 'bar', source: bar },
    ],
    udmabuf: exporter,
    log: (line) => logs.push(line),
  });
  assert.equal(await compositor.use(plugin), true, logs.join('; '));

  bootStarted = Date.now();
  qemu = bootGuest(tier, guest, {
    gpuSocket: path.join(workDir, 'gpu.sock'),
    ivshmemSocket: path.join(workDir, 'ivshmem.sock'),
    width: WIDTH,
    height: HEIGHT,
    fbcon: false,
    memoryMb: 256,
    fastBoot: true,
    guestCommand:
      `barwriter --width ${BAR_WIDTH} --height ${BAR_HEIGHT} --fps 2 --frames ${BAR_FRAMES} --hold & ` +
      `drawpattern --mode ${WIDTH}x${HEIGHT} --fps 2 --frames ${GPU_FRAMES} --hold`,
    timeoutMs: WAIT_MS,
    // The guest's console, live: the boot's progress shows in the host test's output.
    onConsole: (line) => process.stderr.write(`nested guest: ${line}\n`),
  });
});

after(async () => {
  await stopAll({ qemu, plugin, compositor, others: [backend, bar] });
  exporter?.dispose();
  removeWorkDir({ workDir });
});

test('nested QEMU: the guest boots with its DRM device on guestfb (times logged)', async (t) => {
  const started = await qemu.waitForConsole(/guestfb-init: started at ([\d.]+) s/);
  const startedMs = Date.now() - bootStarted;
  const init = await qemu.waitForConsole(/guestfb-init: up at ([\d.]+) s/);
  const initMs = Date.now() - bootStarted;
  const drm = await qemu.waitForConsole(/guestfb-init: \/dev\/dri\/card0 ready at ([\d.]+) s/);
  const drmMs = Date.now() - bootStarted;
  t.diagnostic(
    `boot timeline (fast boot): QEMU start -> /init running ${(startedMs / 1000).toFixed(1)} s ` +
      `(guest uptime ${started[1]} s), -> /init set up ${(initMs / 1000).toFixed(1)} s (guest uptime ${init[1]} s), ` +
      `-> DRM device ${(drmMs / 1000).toFixed(1)} s (guest uptime ${drm[1]} s), accel ${
        qemu.argv[qemu.argv.indexOf('-accel') + 1]
      }`,
  );
});

test('example compositor: the guest frame is a udmabuf over the guest memfd ranges, exact, 0 bytes copied', async (t) => {
  await qemu.waitForConsole(/drawpattern: holding the last frame/);
  await until(() => backend.scanout(0) !== null, 'the scanout');
  await settled(GPU_TITLE);
  const scanout = backend.scanout(0)!;
  const resource = backend.resource(scanout.resourceId)!;
  const window = plugin.presenter!.windows().find((w) => w.title === GPU_TITLE)!;

  // The path, from the presenter: a dma-buf buffer, made by UDMABUF_CREATE_LIST over exactly
  // the guest RAM memfd ranges QEMU's vhost-user memory table gave the back-end.
  assert.equal(window.buffer?.path, 'dmabuf', debug());
  assert.equal(udmabufLists.length >= 1, true, 'a udmabuf list was created');
  const list = udmabufLists.find((l) => l.ranges.reduce((n, r) => n + r.size, 0) === resource.size);
  assert.ok(list, `a udmabuf list covers the ${resource.size} bytes of resource ${resource.id}`);
  const guestFds = new Set(resource.backing.map((r) => r.fd));
  for (const range of list.ranges) {
    assert.ok(guestFds.has(range.memfd), `udmabuf range on memfd ${range.memfd} is guest RAM`);
  }
  let at = 0;
  const expected = resource.backing.map((r) => ({
    fd: r.fd,
    start: r.offset,
    end: r.offset + r.length,
  }));
  for (const range of list.ranges) {
    // Each coalesced range is a run of the guest's backing, in order.
    let covered = 0;
    while (covered < range.size) {
      const piece = expected[at++];
      assert.ok(piece, 'ranges beyond the backing');
      assert.equal(piece.fd, range.memfd);
      assert.equal(piece.start, range.offset + covered, 'contiguous run of guest pages');
      covered += piece.end - piece.start;
    }
    assert.equal(covered, range.size);
  }
  assert.equal(at, expected.length, 'every backing range is in the dma-buf');

  const image = capture(GPU_TITLE);
  assertExactFrame(image, GPU_FRAMES - 1, 'compositor screenshot');

  const stats = plugin.stats();
  const gpuStats = backend.stats();
  t.diagnostic(
    `resource ${resource.id}: ${resource.backing.length} backing ranges -> ${list.ranges.length} udmabuf ranges; ` +
      `guest flushes ${flushes}, frames presented ${stats.framesPresented}, handoff p50 ${stats.handoffP50Us} us; ` +
      `plugin ${JSON.stringify(stats)}; back-end bytesCopied ${gpuStats.bytesCopied}`,
  );
  // RESOURCE_FLUSH -> damage + commit: no pixel touched on the way, by the back-end or the plugin.
  assert.equal(gpuStats.bytesCopied, 0, 'the back-end copied nothing');
  assert.equal(stats.bytesCopied, 0, 'the plugin copied nothing');
  assert.equal(stats.fallbackReason, null);
  assert.ok((gpuStats['cmd.RESOURCE_FLUSH'] ?? 0) >= GPU_FRAMES, 'every frame flushed');
  assert.ok(stats.handoffSamples >= 1, 'flushes became commits');
});

test('example compositor: the ivshmem BAR written by barwriter, dma-buf, exact, 0 bytes copied', async () => {
  await qemu.waitForConsole(/barwriter: holding the last frame/);
  await until(
    () => plugin.presenter!.windows().some((w) => w.title === BAR_TITLE && w.buffer !== null),
    'the BAR window',
  );
  await settled(BAR_TITLE);
  const window = plugin.presenter!.windows().find((w) => w.title === BAR_TITLE)!;
  assert.equal(window.buffer?.path, 'dmabuf', debug());
  const barList = udmabufLists.find((l) => l.ranges.every((r) => r.memfd === bar.memfd));
  assert.ok(barList, 'a udmabuf list over the BAR memfd');
  // The last frame may still be on its way after the guest's message: wait for its counter.
  let image = capture(BAR_TITLE);
  await until(
    () => decodeCounter((image = capture(BAR_TITLE))) === BAR_FRAMES - 1,
    'the last BAR frame',
    60_000,
  );
  assertExactFrame(image, BAR_FRAMES - 1, 'BAR window');
  assert.equal(plugin.stats().bytesCopied, 0);
  assert.equal(plugin.stats().fallbackReason, null);
});

test('weston 14 (GL renderer): guestfb standalone shows the same guest, capture exact, 0 bytes copied', async (t) => {
  const cache = process.env.GUESTFB_WESTON14_CACHE;
  assert.ok(
    cache,
    'GUESTFB_WESTON14_CACHE must name the weston14 cache (set by nested-qemu.test.ts)',
  );
  const tree = cachedWeston14(cache);
  // The example compositor lets go of the guest; the back-end and the guest keep running.
  plugin.stop();
  await compositor.close();
  const weston = await startWeston(tree, { width: WIDTH, height: HEIGHT });
  let probe: WestonProbe | null = null;
  let standalone: GuestfbPlugin | null = null;
  const westonLogs: string[] = [];
  try {
    probe = await WestonProbe.connect(weston.socketPath, tree.captureProtocolXml);
    standalone = await runStandalone({
      display: weston.socketPath,
      sources: [{ name: 'vm', source: backend }],
      log: (line) => westonLogs.push(line),
    });
    const shown = standalone;
    await settleUntil(
      shown,
      () =>
        shown.stats().framesPresented >= 1 && !shown.presenter!.windows()[0]!.pacer.waitingForFrame,
      'weston to show the guest',
      { limitMs: WAIT_MS, intervalMs: 20 },
    ).catch((error: unknown) => {
      throw withContext(error, `weston log: ${westonLogs.join('; ')}`);
    });
    const window = standalone.presenter!.windows()[0]!;
    assert.equal(window.buffer?.path, 'dmabuf', westonLogs.join('; '));
    // kiosk-shell shows the toplevel fullscreen: weston's output is the guest's frame.
    assertExactFrame(toRgb(await probe.capture('framebuffer')), GPU_FRAMES - 1, "weston's capture");
    const stats = standalone.stats();
    t.diagnostic(`${tree.versionString}: ${JSON.stringify(stats)}`);
    assert.equal(stats.bytesCopied, 0);
    assert.equal(stats.fallbackReason, null);
    assert.equal(weston.exited, null, 'weston still running');
  } catch (error) {
    t.diagnostic(`weston's log:\n${weston.log()}`);
    throw error;
  } finally {
    standalone?.stop();
    probe?.close();
    await weston.stop();
  }
});

test('fds: everything the test opened is closed again', async () => {
  qemu.kill('SIGKILL');
  await qemu.exited.catch(() => undefined);
  backend.close();
  bar.close();
  exporter.dispose();
  assert.equal(fd.openFdCount(), baselineFds);
});
