// Runs inside the kernel-tier VM (real /dev/udmabuf), started by test/vm/plugin.test.ts: the
// pattern source's scattered memfd pages -> coalescing -> UDMABUF_CREATE_LIST -> dma-buf ->
// zwp_linux_dmabuf_v1 in the example compositor, checked pixel by pixel, with no byte copied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { fd } from '../../../native/fd.js';
import { createCompositor, type Compositor } from '../../../examples/compositor/index.js';
import { decodePng } from '../../../examples/compositor/render/screenshot.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../../plugin/index.js';
import { coalesceRanges } from '../../../plugin/present/plan.js';
import {
  PatternSource,
  patternPixel,
  type PatternSourceOptions,
} from '../../../plugin/sources/pattern.js';
import { settleUntil } from '../../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';

function mismatches(compositor: Compositor, frame: number, width: number, height: number) {
  const image = decodePng(compositor.screenshot(OUTPUT));
  assert.equal(image.width, width);
  assert.equal(image.height, height);
  let differing = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (image.pixel(x, y) !== (patternPixel(x, y, frame, width, height) & 0xffffff)) differing++;
    }
  }
  return differing;
}

async function run(
  options: PatternSourceOptions,
  body: (s: {
    compositor: Compositor;
    plugin: GuestfbPlugin;
    source: PatternSource;
    logs: string[];
    presented: (count: number) => Promise<void>;
  }) => Promise<void>,
) {
  const baseline = fd.openFdCount();
  const logs: string[] = [];
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: options.width, height: options.height, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const source = new PatternSource({ rate: 0, ...options });
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'vm-guest', source }],
    log: (line) => logs.push(line),
  });
  try {
    assert.equal(await compositor.use(plugin), true, logs.join('; '));
    const presented = async (count: number) => {
      await settleUntil(plugin, () => plugin.stats().framesPresented >= count, `frame ${count}`);
      const window = plugin.presenter!.windows()[0];
      await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    };
    await body({ compositor, plugin, source, logs, presented });
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
}

test('/dev/udmabuf is there', () => {
  assert.equal(statSync('/dev/udmabuf').isCharacterDevice(), true);
});

test('scattered guest pages reach the compositor as one dma-buf: pixel-exact, 0 bytes copied', async () => {
  const [width, height] = [640, 480];
  await run({ width, height, layout: 'scattered' }, async (s) => {
    const ranges = s.source.guest.buffer().ranges;
    const spans = coalesceRanges(ranges).length;
    assert.ok(spans > 1 && spans < ranges.length, `${ranges.length} ranges coalesce to ${spans}`);
    await s.presented(1);
    const window = s.plugin.presenter!.windows()[0];
    const buffer = window.buffer;
    assert.equal(buffer?.path, 'dmabuf', s.logs.join('; '));
    assert.equal(mismatches(s.compositor, 0, width, height), 0);

    // A second pattern written into the same pages, then a flush: no new buffer, no copy.
    s.source.showFrame(13);
    await s.presented(2);
    assert.equal(window.buffer, buffer, 'the same wl_buffer');
    assert.equal(mismatches(s.compositor, 13, width, height), 0);

    const stats = s.plugin.stats();
    assert.equal(stats.bytesCopied, 0);
    assert.equal(stats.dmabufsLive, 1);
    assert.equal(stats.fallbackReason, null);
    assert.deepEqual(
      s.logs.filter((line) => line.includes('fallback')),
      [],
    );
  });
});

test('more ranges than list_limit: a typed refusal, a logged fallback, counted copies', async () => {
  // 1280x832 XRGB is 1040 pages; with no two pages adjacent nothing coalesces.
  const [width, height] = [1280, 832];
  await run({ width, height, layout: 'scattered', maxRun: 1 }, async (s) => {
    await s.presented(1);
    const window = s.plugin.presenter!.windows()[0];
    assert.equal(window.buffer?.path, 'shm-copy');
    const stats = s.plugin.stats();
    assert.match(
      stats.fallbackReason ?? '',
      /udmabuf refused: 1040 ranges exceed udmabuf list_limit 1024/,
    );
    assert.equal(stats.bytesCopied, width * height * 4);
    assert.equal(stats.dmabufsLive, 0);
    assert.equal(mismatches(s.compositor, 0, width, height), 0);
  });
});
