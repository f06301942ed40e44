// Runs inside the kernel-tier VM (real /dev/udmabuf), started by test/vm/weston14.test.ts: a
// compositor nobody here wrote, weston 14 with its GL renderer on Mesa's llvmpipe, takes
// guestfb's udmabuf dma-buf through zwp_linux_dmabuf_v1 v3, and weston's own capture protocol
// shows the guest's pixels exactly, with no byte copied by guestfb.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { fd } from '../../../native/fd.js';
import { runStandalone, type GuestfbPlugin } from '../../../plugin/index.js';
import { coalesceRanges } from '../../../plugin/present/plan.js';
import { PatternSource, patternPixel } from '../../../plugin/sources/pattern.js';
import { cachedWeston14 } from '../weston14.js';
import { startWeston, WestonProbe, type CapturedImage } from './weston14-session.js';
import { settleUntil, until } from '../../helpers/wait.js';

// Small: weston renders with llvmpipe, and everything runs under TCG.
const [WIDTH, HEIGHT] = [320, 240];
const SECOND_FRAME = 13;

/** Pixels whose RGB differs from the pattern's frame (weston's capture is ARGB; alpha ignored). */
function mismatches(image: CapturedImage, frame: number): number {
  assert.equal(image.width, WIDTH);
  assert.equal(image.height, HEIGHT);
  let differing = 0;
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const got = image.words[y * image.width + x]! & 0xffffff;
      if (got !== (patternPixel(x, y, frame, WIDTH, HEIGHT) & 0xffffff)) differing++;
    }
  }
  return differing;
}

/** Waits until `count` frames were committed and weston's frame callback for the last came back. */
async function presented(plugin: GuestfbPlugin, count: number): Promise<void> {
  await until(() => plugin.stats().framesPresented >= count, `frame ${count} to be committed`, {
    limitMs: 180_000,
    intervalMs: 20,
  });
  const window = plugin.presenter!.windows()[0]!;
  await settleUntil(
    plugin,
    () => !window.pacer.waitingForFrame,
    `the frame callback of frame ${count}`,
    { limitMs: 200_000, intervalMs: 10 },
  );
}

test('/dev/udmabuf is there', () => {
  assert.equal(statSync('/dev/udmabuf').isCharacterDevice(), true);
});

test('weston 14 (GL renderer, llvmpipe) shows guestfb dma-buf pixel-exact, 0 bytes copied', async (t) => {
  const cache = process.env.GUESTFB_WESTON14_CACHE;
  assert.ok(cache, 'GUESTFB_WESTON14_CACHE must name the weston14 cache (set by weston14.test.ts)');
  const tree = cachedWeston14(cache);
  assert.match(tree.versionString, /^weston 14\./);

  const baseline = fd.openFdCount();
  const weston = await startWeston(tree, { width: WIDTH, height: HEIGHT });
  const logs: string[] = [];
  let probe: WestonProbe | null = null;
  let plugin: GuestfbPlugin | null = null;
  const source = new PatternSource({ width: WIDTH, height: HEIGHT, layout: 'scattered', rate: 0 });
  try {
    probe = await WestonProbe.connect(weston.socketPath, tree.captureProtocolXml);
    assert.match(weston.log(), /Using GL renderer/);
    assert.match(weston.log(), /GL renderer: llvmpipe/);
    // No render node in the VM, so no v4 feedback: v3 with format and modifier events.
    assert.equal(probe.dmabufVersion, 3);
    const formats = await probe.dmabufFormats();
    assert.ok(formats.get('XR24')?.includes(0n), 'XRGB8888 with the LINEAR modifier offered');
    t.diagnostic(
      `${tree.versionString}, Mesa ${tree.packages.find((p) => p.name === 'mesa-libgallium')?.version}: ` +
        `linux-dmabuf v${probe.dmabufVersion}, ${formats.size} formats`,
    );

    // The guest's framebuffer is scattered over its RAM: several spans, one udmabuf list.
    const ranges = source.guest.buffer().ranges;
    const spans = coalesceRanges(ranges).length;
    assert.ok(spans > 1 && spans < ranges.length, `${ranges.length} ranges coalesce to ${spans}`);

    plugin = await runStandalone({
      display: weston.socketPath,
      sources: [source],
      log: (line) => logs.push(line),
    });
    await presented(plugin, 1);
    const window = plugin.presenter!.windows()[0]!;
    const buffer = window.buffer;
    assert.equal(buffer?.path, 'dmabuf', logs.join('; '));
    // The kiosk shell shows the toplevel fullscreen: the output is exactly the guest's frame.
    assert.equal(mismatches(await probe.capture('framebuffer'), 0), 0);

    // A second pattern written into the same pages, then a flush: same wl_buffer, no copy.
    source.showFrame(SECOND_FRAME);
    await presented(plugin, 2);
    assert.equal(window.buffer, buffer, 'the same wl_buffer');
    const second = await probe.capture('framebuffer');
    assert.ok(mismatches(second, 0) > 0, 'the second frame differs from the first');
    assert.equal(mismatches(second, SECOND_FRAME), 0);

    // A moving-box step damages only the old and the new box: weston samples the pages again.
    source.step();
    await presented(plugin, 3);
    assert.equal(mismatches(await probe.capture('framebuffer'), SECOND_FRAME + 1), 0);

    const stats = plugin.stats();
    assert.equal(stats.bytesCopied, 0);
    assert.ok(stats.dmabufsLive >= 1, `dmabufsLive ${stats.dmabufsLive}`);
    assert.equal(stats.fallbackReason, null);
    assert.deepEqual(
      logs.filter((line) => line.includes('fallback')),
      [],
    );
    assert.equal(weston.exited, null, 'weston still running');
  } catch (error) {
    t.diagnostic(`weston's log:\n${weston.log()}`);
    throw error;
  } finally {
    plugin?.stop();
    probe?.close();
    source.close();
    await weston.stop();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});
