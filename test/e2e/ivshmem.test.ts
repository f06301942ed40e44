// End to end through the shared BAR: QEMU 10 with ivshmem-doorbell connected to guestfb's
// ivshmem server, the test guest's barwriter drawing the documented pattern into the BAR and
// ringing guestfb's doorbell, guestfb presenting the BAR pages in the example compositor. The
// compositor's screenshot must equal the pattern pixel for pixel (frame counter included), and
// the counter must keep up with the guest. No GPU in the guest (gpuDevice none). The first test
// then resizes guestfb's window: barwriter follows the size guestfb requests through the header.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import {
  bootGuest,
  gpuDeviceId,
  type GuestImage,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { comparePattern, decodeCounter, type RgbImage } from '../../examples/guest/pattern.js';
import { QmpClient, screendump } from '../../examples/qemu/qmp.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../plugin/index.js';
import { expectedPath, udmabufOnHost } from './helpers/udmabuf.js';
import {
  guestContext,
  prepareE2e,
  removeWorkDir,
  stopAll,
  withContext,
} from './helpers/context.js';
import { createSharedBarSource, Field } from '../../plugin/sources/shared-bar/index.js';
import type { FramebufferSource } from '../../plugin/sources/types.js';
import { XdgSurfaceObject } from '../../examples/compositor/protocol/xdg-surface.js';
import { screenshot as screenshotOf, windowImage, windowsByTitle } from './helpers/windows.js';
import { settleUntil, until } from '../helpers/wait.js';

const width = 640;
const height = 480;
const frames = 40;
const OUTPUT = 'HEADLESS-1';

/** A headless compositor of the given size with guestfb loaded on `source` (window "vm"). */
async function showInCompositor(
  source: FramebufferSource,
  logs: string[],
  outputWidth: number,
  outputHeight: number,
): Promise<{ compositor: Compositor; plugin: GuestfbPlugin }> {
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: outputWidth, height: outputHeight, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'vm', source }],
    log: (line) => logs.push(line),
  });
  assert.equal(await compositor.use(plugin), true, logs.join('; '));
  return { compositor, plugin };
}

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;

before(async () => {
  ({ tier, guest, workDir } = await prepareE2e('ivshmem'));
});

after(() => removeWorkDir({ workDir }));

function toRgb(png: Buffer): RgbImage {
  const image = decodePng(png);
  const rgb = Buffer.alloc(image.width * image.height * 3);
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const pixel = image.pixel(x, y);
      const o = (y * image.width + x) * 3;
      rgb[o] = pixel >> 16;
      rgb[o + 1] = (pixel >> 8) & 0xff;
      rgb[o + 2] = pixel & 0xff;
    }
  }
  return { width: image.width, height: image.height, rgb };
}

test('QEMU 10 ivshmem-doorbell on guestfb: barwriter pattern pixel-exact in the compositor', async (t) => {
  const baselineFds = fd.openFdCount();
  const logs: string[] = [];
  const socketPath = path.join(workDir, 'ivshmem.sock');
  const source = createSharedBarSource({
    ivshmemSocket: socketPath,
    log: (_level, m) => logs.push(m),
  });
  const { compositor, plugin } = await showInCompositor(source, logs, width, height);
  const qemu = bootGuest(tier, guest, {
    ivshmemSocket: socketPath,
    gpuDevice: 'none',
    guestCommand: `barwriter --width ${width} --height ${height} --fps 10 --frames ${frames} --hold`,
    timeoutMs: 240_000,
  });
  const committedFrame = () => {
    const bytes = new Uint8Array(4);
    fd.pread(source.memfd, bytes, Field.sequence);
    return new DataView(bytes.buffer).getUint32(0, true) / 2 - 1;
  };
  const screenshot = () => toRgb(compositor.screenshot(OUTPUT));
  const holding = () => /barwriter: holding the last frame/.test(qemu.console());
  /** Waits for a presentation after `count`; false when the guest stopped drawing first. */
  const presentedAfter = async (count: number) => {
    await settleUntil(
      plugin,
      () => plugin.stats().framesPresented > count || holding(),
      'a presentation',
    );
    const window = plugin.presenter!.windows()[0]!;
    await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    return plugin.stats().framesPresented > count;
  };
  try {
    await qemu.waitForConsole(/barwriter: first frame/);
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 1, 'the first frame');
    const window = plugin.presenter!.windows()[0]!;

    // While the guest animates: each screenshot is an exact frame, the counter keeps moving, and
    // what the guest committed before a presentation is on screen after it.
    const seen: number[] = [];
    let lag = 0;
    while (!holding()) {
      const committed = committedFrame();
      if (!(await presentedAfter(plugin.stats().framesPresented))) break;
      const image = screenshot();
      const counter = decodeCounter(image);
      assert.notEqual(counter, null, 'a readable counter');
      const exact = comparePattern(image, { width, height, outputIndex: 0, frame: counter! });
      assert.equal(exact.mismatches, 0, `frame ${counter}: first ${JSON.stringify(exact.first)}`);
      assert.ok(counter! >= committed, `screen shows ${counter}, guest had committed ${committed}`);
      lag = Math.max(lag, committedFrame() - counter!);
      if (seen.at(-1) !== counter) seen.push(counter!);
    }
    t.diagnostic(`counters seen on screen: ${seen.join(' ')}; most frames behind: ${lag}`);
    assert.ok(seen.length >= 2, `the counter moved (${seen.join(' ')})`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, 'counter only grows');

    // The held last frame, exactly.
    let last = screenshot();
    await settleUntil(
      plugin,
      () => decodeCounter((last = screenshot())) === frames - 1,
      'the last frame on screen',
    );
    const result = comparePattern(last, { width, height, outputIndex: 0, frame: frames - 1 });
    assert.equal(result.mismatches, 0, `last frame: first ${JSON.stringify(result.first)}`);
    assert.equal(decodeCounter(last), frames - 1);

    const stats = plugin.stats();
    const sourceStats = source.stats();
    t.diagnostic(`plugin: ${JSON.stringify(stats)}`);
    t.diagnostic(`source: ${JSON.stringify(sourceStats)}; buffer path ${window.buffer?.path}`);
    assert.equal(stats.bytesCopied, 0, 'no pixel copied');
    // The BAR is one sealed memfd: the dma-buf where udmabuf works, else wl_shm on that memfd.
    assert.equal(window.buffer?.path, expectedPath('shm-direct'), udmabufOnHost().reason);
    if (!udmabufOnHost().usable) assert.match(stats.fallbackReason ?? '', /udmabuf/);
    else assert.equal(stats.fallbackReason, null);
    assert.equal(sourceStats.layoutChanges, 1, 'one buffer for the whole run');
    assert.ok(sourceStats.doorbellFrames! > 0, "frames arrived through guestfb's doorbell");
    assert.equal(sourceStats.invalidHeaders, 0);
    assert.match(
      qemu.console(),
      /barwriter: device \S+ BAR2 67108864 bytes, IVPosition 1, host peer 0/,
    );

    // The compositor resizes the window: guestfb writes the size into the BAR's request fields,
    // the holding barwriter (header version 2) re-lays out its framebuffer at that size, and the
    // window shows the held frame at the new size, pixel for pixel.
    const [newWidth, newHeight] = [480, 360];
    const shown = windowsByTitle(compositor).get('vm — ivshmem');
    assert.ok(shown, 'the window "vm — ivshmem"');
    const role = shown.surface.roleData;
    assert.ok(role instanceof XdgSurfaceObject && role.toplevel, 'an xdg_toplevel');
    role.toplevel.configure(newWidth, newHeight);
    await qemu.waitForConsole(/barwriter: resized to 480x360 stride 1920/);
    let resized: RgbImage | null = null;
    await settleUntil(
      plugin,
      () => {
        const current = windowsByTitle(compositor).get('vm — ivshmem');
        const size = current?.surface.size();
        if (!current || size?.width !== newWidth || size.height !== newHeight) return false;
        resized = windowImage(screenshotOf(compositor, OUTPUT), current);
        return (
          comparePattern(resized, {
            width: newWidth,
            height: newHeight,
            outputIndex: 0,
            frame: frames - 1,
          }).mismatches === 0
        );
      },
      'the held frame at 480x360',
    );
    assert.equal(decodeCounter(resized!), frames - 1);
    const afterResize = source.stats();
    t.diagnostic(`after the resize: ${JSON.stringify(afterResize)}`);
    assert.equal(afterResize.layoutChanges, 2, 'one new layout, at the requested size');
    assert.equal(afterResize.sizeRequests, 1);
    assert.equal(afterResize.requestsAcked, 1, 'barwriter acknowledged the request');
    assert.deepEqual(
      [source.scanout(0)?.width, source.scanout(0)?.height, source.scanout(0)?.stride],
      [newWidth, newHeight, newWidth * 4],
    );
    assert.ok(logs.some((line) => /configured to 480x360; offered to the guest/.test(line)));
    assert.equal(plugin.stats().bytesCopied, 0, 'still no pixel copied');
  } catch (error) {
    throw withContext(error, guestContext('guestfb log', logs, qemu));
  } finally {
    qemu.kill('SIGKILL');
    await qemu.exited;
    await settleUntil(plugin, () => source.server!.peers().length === 0, 'QEMU to disconnect');
    plugin.stop();
    await compositor.close();
    source.close();
  }
  assert.equal(fd.openFdCount(), baselineFds, 'fd count back to baseline');
});

test('QEMU 10 ivshmem-plain on a guestfb memfd (/proc/PID/fd): polled frames, pixel-exact', async (t) => {
  const baselineFds = fd.openFdCount();
  const logs: string[] = [];
  const source = createSharedBarSource({
    barSize: 16 * 1024 * 1024,
    log: (_level, m) => logs.push(m),
  });
  const { compositor, plugin } = await showInCompositor(source, logs, width, height);
  const plainFrames = 5;
  const qemu = bootGuest(tier, guest, {
    gpuDevice: 'none',
    extraArgs: source.plainQemuArgs(),
    guestCommand: `barwriter --width ${width} --height ${height} --fps 10 --frames ${plainFrames} --hold`,
    timeoutMs: 240_000,
  });
  try {
    await qemu.waitForConsole(/barwriter: holding the last frame/);
    let last = toRgb(compositor.screenshot(OUTPUT));
    await settleUntil(
      plugin,
      () =>
        plugin.stats().framesPresented > 0 &&
        decodeCounter((last = toRgb(compositor.screenshot(OUTPUT)))) === plainFrames - 1,
      'the last frame on screen',
    );
    const result = comparePattern(last, { width, height, outputIndex: 0, frame: plainFrames - 1 });
    assert.equal(result.mismatches, 0, `first ${JSON.stringify(result.first)}`);
    const stats = source.stats();
    t.diagnostic(`source: ${JSON.stringify(stats)}`);
    assert.equal(stats.doorbellFrames, 0, 'no doorbell without a server');
    assert.ok(stats.polledFrames! > 0);
    assert.equal(plugin.stats().bytesCopied, 0);
    assert.match(
      qemu.console(),
      /barwriter: device \S+ BAR2 16777216 bytes, IVPosition 0, host peer -1/,
    );
  } catch (error) {
    throw withContext(error, guestContext('guestfb log', logs, qemu));
  } finally {
    await stopAll({ qemu, plugin, compositor, others: [source] });
  }
  assert.equal(fd.openFdCount(), baselineFds, 'fd count back to baseline');
});

test('barwriter --mirror /dev/fb0: the guest console through the BAR equals QEMU screendump', async (t) => {
  const baselineFds = fd.openFdCount();
  const logs: string[] = [];
  const socketPath = path.join(workDir, 'mirror.sock');
  const qmpSocket = path.join(workDir, 'mirror-qmp.sock');
  const [consoleWidth, consoleHeight] = [1280, 800];
  const source = createSharedBarSource({
    ivshmemSocket: socketPath,
    log: (_level, m) => logs.push(m),
  });
  const { compositor, plugin } = await showInCompositor(source, logs, consoleWidth, consoleHeight);
  // QEMU's own virtio-gpu-pci drives fbcon; barwriter mirrors /dev/fb0 into guestfb's BAR.
  const qemu = bootGuest(tier, guest, {
    ivshmemSocket: socketPath,
    qmpSocket,
    width: consoleWidth,
    height: consoleHeight,
    guestCommand:
      'echo 0 > /sys/class/graphics/fbcon/cursor_blink; echo barwriter mirror test > /dev/tty0; ' +
      'barwriter --mirror /dev/fb0 --fps 10 --frames 30 --hold & ' +
      'sleep 1; echo a later line > /dev/tty0; wait',
    timeoutMs: 240_000,
  });
  let qmp: QmpClient | undefined;
  try {
    await qemu.waitForConsole(/barwriter: holding the last frame/);
    qmp = await QmpClient.connect(qmpSocket);
    const dumpFile = path.join(workDir, 'mirror.ppm');
    let differing = -1;
    let shown: RgbImage | undefined;
    let dump: RgbImage | undefined;
    await until(
      () => {
        if (plugin.stats().framesPresented === 0) return false;
        shown = toRgb(compositor.screenshot(OUTPUT));
        differing = dump ? countDiffering(shown, dump) : -1;
        return differing === 0;
      },
      'the mirrored console',
      {
        // A fresh QEMU screendump between checks, after a roundtrip with the compositor.
        limitMs: 300_000,
        step: async () => {
          await plugin.settle();
          dump = await screendump(qmp!, dumpFile, { device: gpuDeviceId, head: 0 });
        },
      },
    );
    assert.equal(differing, 0);
    const lit = countDiffering(shown!, { ...shown!, rgb: Buffer.alloc(shown!.rgb.length) });
    t.diagnostic(`source: ${JSON.stringify(source.stats())}; ${lit} non-black pixels`);
    assert.ok(lit > 1000, 'the console shows text');
    assert.equal(plugin.stats().bytesCopied, 0);
    // The later line arrived as a frame of its own, damaged rows only.
    const partial = [...qemu.console().matchAll(/barwriter: mirrored (\d+) rows/g)]
      .map((m) => Number(m[1]))
      .filter((rows) => rows < consoleHeight);
    assert.ok(partial.length > 0, 'a frame with only the changed rows');
    assert.ok(source.stats().frames! >= 2);
  } catch (error) {
    throw withContext(error, guestContext('guestfb log', logs, qemu));
  } finally {
    qmp?.close();
    await stopAll({ qemu, plugin, compositor, others: [source] });
  }
  assert.equal(fd.openFdCount(), baselineFds, 'fd count back to baseline');
});

function countDiffering(a: RgbImage, b: RgbImage): number {
  if (a.width !== b.width || a.height !== b.height) return a.width * a.height || 1;
  let differing = 0;
  for (let i = 0; i < a.rgb.length; i += 3) {
    if (a.rgb[i] !== b.rgb[i] || a.rgb[i + 1] !== b.rgb[i + 1] || a.rgb[i + 2] !== b.rgb[i + 2]) {
      differing++;
    }
  }
  return differing;
}
