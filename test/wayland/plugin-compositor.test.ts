/**
 * The plugin inside the example compositor, in-process, with the pattern source: every path a
 * host can take, checked pixel by pixel in the compositor's screenshots.
 *
 * The host has no /dev/udmabuf, so the real device gives the counted fallback. The zero-copy
 * path runs through the same presenter code with a stand-in udmabuf whose "dma-buf" is the
 * guest memfd itself (the framebuffer starts at offset 0 of it, so the two are byte-identical;
 * the example compositor maps dma-bufs, so it accepts a memfd).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import {
  UdmabufExporter,
  nativeUdmabufSyscalls,
  type UdmabufSyscalls,
} from '../../plugin/dmabuf/index.js';
import {
  createGuestfbPlugin,
  type GuestfbPlugin,
  type GuestfbPluginOptions,
} from '../../plugin/index.js';
import { DRM_FORMAT_MOD_LINEAR, DrmFormat } from '../../plugin/common/formats.js';
import {
  PatternSource,
  boxSize,
  patternPixel,
  type PatternSourceOptions,
} from '../../plugin/sources/pattern.js';
import { settleUntil } from '../helpers/wait.js';

const [W, H] = [320, 200];
const OUTPUT = 'HEADLESS-1';

/** A udmabuf stand-in: one range at offset 0 becomes a dup of its memfd. */
const memfdAsDmabuf: UdmabufSyscalls = {
  ...nativeUdmabufSyscalls,
  open: () => fd.eventfd(0),
  create: (_device, range) => {
    if (range.offset !== 0) throw new Error('the stand-in only wraps ranges at offset 0');
    return fd.dup(range.memfd);
  },
  createList: () => {
    throw new Error('the stand-in does not do lists');
  },
};

const limits = (listLimit: number) => ({
  listLimit,
  sizeLimitMb: 64,
  sizeLimitBytes: 64 * 1024 * 1024,
  assumed: [],
});

function mismatches(compositor: Compositor, frame: number): number {
  const image = decodePng(compositor.screenshot(OUTPUT));
  assert.equal(image.width, W);
  assert.equal(image.height, H);
  let differing = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (image.pixel(x, y) !== (patternPixel(x, y, frame, W, H) & 0xffffff)) differing++;
    }
  }
  return differing;
}

interface Setup {
  compositor: Compositor;
  plugin: GuestfbPlugin;
  source: PatternSource;
  logs: string[];
  /** Waits until `count` frames were presented and the last frame callback came back. */
  presented(count: number): Promise<void>;
}

async function withPlugin(
  t: TestContext,
  sourceOptions: Partial<PatternSourceOptions>,
  udmabufOption: string | false | (() => UdmabufExporter),
  body: (setup: Setup) => Promise<void>,
  maxDmabufVersion?: number,
  pluginOptions: Partial<GuestfbPluginOptions> = {},
): Promise<void> {
  const baseline = fd.openFdCount();
  const udmabuf = typeof udmabufOption === 'function' ? udmabufOption() : udmabufOption;
  const logs: string[] = [];
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: W, height: H, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const source = new PatternSource({ width: W, height: H, rate: 0, ...sourceOptions });
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'test-guest', source }],
    udmabuf,
    log: (line) => logs.push(line),
    maxDmabufVersion,
    ...pluginOptions,
  });
  try {
    assert.equal(await compositor.use(plugin), true, `plugin started: ${logs.join('; ')}`);
    const presented = async (count: number) => {
      await settleUntil(plugin, () => plugin.stats().framesPresented >= count, `frame ${count}`);
      const window = plugin.presenter!.windows()[0];
      await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    };
    await body({ compositor, plugin, source, logs, presented });
    t.diagnostic(`stats: ${JSON.stringify(plugin.stats())}`);
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
    if (udmabuf instanceof UdmabufExporter) udmabuf.dispose();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
}

test('no udmabuf: scattered guest pages are copied, damaged rects only, and counted', async (t) => {
  await withPlugin(t, { layout: 'scattered' }, '/dev/udmabuf-absent', async (s) => {
    await s.presented(1);
    assert.equal(mismatches(s.compositor, 0), 0);
    const window = s.plugin.presenter!.windows()[0];
    assert.equal(window.buffer?.path, 'shm-copy');
    let stats = s.plugin.stats();
    assert.equal(stats.bytesCopied, W * H * 4, 'the first frame copies everything');
    assert.match(
      stats.fallbackReason ?? '',
      /cannot open \/dev\/udmabuf-absent.*copying damaged rects/,
    );
    assert.equal(s.logs.filter((line) => line.includes('fallback:')).length, 1);

    // One step damages the old and the new box: only those are copied.
    s.source.step();
    await s.presented(2);
    const box = boxSize(W, H);
    stats = s.plugin.stats();
    assert.equal(stats.bytesCopied, W * H * 4 + 2 * box * box * 4);
    assert.equal(mismatches(s.compositor, 1), 0);

    s.source.showFrame(9);
    await s.presented(3);
    assert.equal(mismatches(s.compositor, 9), 0);
    assert.equal(s.plugin.stats().bytesCopied, 2 * W * H * 4 + 2 * box * box * 4);
    assert.equal(s.logs.filter((line) => line.includes('fallback:')).length, 1, 'logged once');
    // Handoff latency is sampled for guest flushes (the first frame is the attach, not a flush).
    assert.equal(s.plugin.stats().handoffSamples, 2);
  });
});

test('no udmabuf: contiguous guest RAM is copied, not shown to the compositor from byte 0', async (t) => {
  // The framebuffer starts 3 pages into "guest RAM": a pool on that memfd would expose them.
  await withPlugin(t, { layout: 'contiguous' }, false, async (s) => {
    await s.presented(1);
    assert.equal(mismatches(s.compositor, 0), 0);
    assert.equal(s.plugin.presenter!.windows()[0].buffer?.path, 'shm-copy');
    assert.match(
      s.plugin.stats().fallbackReason ?? '',
      /udmabuf disabled.*contiguous backing at byte 12288 of guest RAM/,
    );
    s.source.showFrame(4);
    await s.presented(2);
    assert.equal(mismatches(s.compositor, 4), 0);
    assert.equal(s.plugin.stats().copyMappings, 1, 'one mapping of the one span');
  });
});

test('no udmabuf, shmOnGuestRam: contiguous guest pages are shown from the guest memfd, no copy', async (t) => {
  await withPlugin(
    t,
    { layout: 'contiguous' },
    false,
    async (s) => {
      await s.presented(1);
      assert.equal(mismatches(s.compositor, 0), 0);
      assert.equal(s.plugin.presenter!.windows()[0].buffer?.path, 'shm-direct');
      s.source.showFrame(4);
      await s.presented(2);
      assert.equal(mismatches(s.compositor, 4), 0);
      const stats = s.plugin.stats();
      assert.equal(stats.bytesCopied, 0);
      assert.equal(stats.copyBuffers, 0);
      assert.match(stats.fallbackReason ?? '', /udmabuf disabled.*contiguous backing: wl_shm/);
    },
    undefined,
    { shmOnGuestRam: true },
  );
});

test('dma-buf path: the guest pages are imported once, flushes copy nothing', async (t) => {
  const exporter = () => UdmabufExporter.open({ syscalls: memfdAsDmabuf, limits: limits(1024) });
  await withPlugin(t, { layout: 'contiguous', firstPage: 0 }, exporter, async (s) => {
    await s.presented(1);
    assert.equal(mismatches(s.compositor, 0), 0);
    const window = s.plugin.presenter!.windows()[0];
    const buffer = window.buffer;
    assert.equal(buffer?.path, 'dmabuf');
    // v4: the formats came from the default feedback's format table and tranches.
    assert.equal(s.plugin.presenter!.globals.dmabufVersion, 4);
    assert.ok(
      s.plugin.presenter!.globals.dmabufFormats?.has(DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR),
    );
    // A second pattern written into the same pages + a flush: the same wl_buffer shows it.
    s.source.showFrame(21);
    await s.presented(2);
    assert.equal(window.buffer, buffer, 'no new buffer');
    assert.equal(mismatches(s.compositor, 21), 0);
    for (let i = 0; i < 5; i++) s.source.step();
    await s.presented(3);
    await settleUntil(s.plugin, () => !window.pacer.damage.count, 'coalesced flushes');
    assert.equal(mismatches(s.compositor, 26), 0);
    const stats = s.plugin.stats();
    assert.equal(stats.bytesCopied, 0);
    assert.equal(stats.dmabufsLive, 1);
    assert.equal(stats.fallbackReason, null);
    assert.equal(s.logs.filter((line) => line.includes('fallback')).length, 0);
  });
});

test('a typed udmabuf refusal (list_limit) falls back with its reason', async (t) => {
  const exporter = () => UdmabufExporter.open({ syscalls: memfdAsDmabuf, limits: limits(4) });
  await withPlugin(t, { layout: 'scattered', maxRun: 1 }, exporter, async (s) => {
    await s.presented(1);
    assert.equal(mismatches(s.compositor, 0), 0);
    assert.equal(s.plugin.presenter!.windows()[0].buffer?.path, 'shm-copy');
    const stats = s.plugin.stats();
    assert.match(
      stats.fallbackReason ?? '',
      /udmabuf refused: \d+ ranges exceed udmabuf list_limit 4/,
    );
    assert.equal(stats.dmabufsLive, 0);
    assert.equal(stats.bytesCopied, W * H * 4);
  });
});

test('linux-dmabuf v3: formats from format/modifier events, same zero-copy result', async (t) => {
  const exporter = () => UdmabufExporter.open({ syscalls: memfdAsDmabuf, limits: limits(1024) });
  await withPlugin(
    t,
    { layout: 'contiguous', firstPage: 0 },
    exporter,
    async (s) => {
      await s.presented(1);
      const presenter = s.plugin.presenter!;
      assert.equal(presenter.globals.dmabufVersion, 3);
      assert.ok(presenter.globals.dmabufFormats?.has(DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR));
      assert.equal(presenter.windows()[0].buffer?.path, 'dmabuf');
      assert.equal(mismatches(s.compositor, 0), 0);
      assert.equal(s.plugin.stats().bytesCopied, 0);
    },
    3,
  );
});
