/**
 * The copy fallback's per-device budget, in the example compositor (in-process, so its pool fds
 * count in this process): a guest cycling through many resources on two heads, forced into
 * shm-copy, keeps at most `maxBuffers` copy buffers; older ones are evicted (their wl_buffer,
 * shm and mappings go, and the compositor closes its pool fd), a buffer on screen is never
 * evicted, and an evicted resource shown again is rebuilt pixel-exact. The same cycle with a
 * limit it never reaches shows what the cache would otherwise hold.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { createGuestfbPlugin } from '../../plugin/index.js';
import { PatternGuest, patternPixel } from '../../plugin/sources/pattern.js';
import type { ScanoutInfo } from '../../plugin/sources/types.js';
import { HandDrivenSource } from '../helpers/hand-driven-source.js';
import { settleUntil } from '../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';
const [W, H] = [160, 100];
const RESOURCES = 12;

/** Two heads, many scattered resources; every event comes from the test. */
class ManyResourceSource extends HandDrivenSource {
  private readonly shown = new Map<number, ScanoutInfo | null>();

  constructor() {
    super(
      [0, 1].map((id) => ({
        id,
        width: W,
        height: H,
        x: id * W,
        y: 0,
        enabled: true,
        name: `head-${id}`,
      })),
    );
    for (let id = 1; id <= RESOURCES; id++) {
      const guest = new PatternGuest({
        width: W,
        height: H,
        layout: 'scattered',
        seed: id,
        maxRun: 4,
      });
      guest.drawFrame(id);
      this.guests.set(id, guest);
    }
  }

  setHeadEnabled(id: number, enabled: boolean): void {
    this.headList = this.headList.map((head) => (head.id === id ? { ...head, enabled } : head));
    this.emit('headsChanged', this.headList);
  }

  scanout(headId: number): ScanoutInfo | null {
    return this.shown.get(headId) ?? null;
  }

  /** Head `headId` shows resource `id` and flushes it whole. */
  show(headId: number, id: number): void {
    const scanout = this.scanoutOf(headId, this.resource(id)!);
    this.shown.set(headId, scanout);
    this.emit('scanoutSet', headId, scanout);
    this.emit('flush', headId, [{ x: 0, y: 0, width: W, height: H }]);
  }
}

function windowMismatches(compositor: Compositor, frame: number): number {
  assert.equal(compositor.scene.windows.length, 1, 'one window on screen');
  const window = compositor.scene.windows[0];
  const image = decodePng(compositor.screenshot(OUTPUT));
  let differing = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const expected = patternPixel(x, y, frame, W, H) & 0xffffff;
      if (image.pixel(window.x + x, window.y + y) !== expected) differing++;
    }
  }
  return differing;
}

interface CycleResult {
  /** Most fds open above the count before the plugin started, after each step settled. */
  peakFdGrowth: number;
  peakCopyBuffers: number;
  copyBuffersMade: number;
  evictions: number;
}

/** Shows every resource on alternating heads, then an evicted one again (pixel-checked). */
async function cycle(t: TestContext, maxBuffers: number): Promise<CycleResult> {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 2 * W + 64, height: H + 64, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const source = new ManyResourceSource();
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'many-resources', source }],
    udmabuf: false,
    copyLimits: { maxBuffers },
    log: (line) => logs.push(line),
  });
  try {
    const beforeStart = fd.openFdCount();
    assert.equal(await compositor.use(plugin), true, logs.join('; '));
    const presenter = plugin.presenter!;
    let peakFdGrowth = 0;
    let peakCopyBuffers = 0;
    let presented = 0;
    const settled = async (what: string) => {
      presented++;
      const target = presented;
      await settleUntil(
        plugin,
        () =>
          plugin.stats().framesPresented >= target &&
          presenter.windows().every((window) => !window.pacer.waitingForFrame),
        what,
      );
      // The compositor closes an evicted buffer's pool fd when it handles the destroy.
      await plugin.settle();
      peakFdGrowth = Math.max(peakFdGrowth, fd.openFdCount() - beforeStart);
      peakCopyBuffers = Math.max(peakCopyBuffers, plugin.stats().copyBuffers);
    };
    for (let id = 1; id <= RESOURCES; id++) {
      source.show(id % 2, id);
      await settled(`resource ${id}`);
      for (const window of presenter.windows()) {
        if (window.buffer) assert.equal(window.buffer.path, 'shm-copy');
      }
    }
    // Only head 0 stays; resource 2 (long evicted under a small limit) is shown again there.
    source.setHeadEnabled(1, false);
    source.show(0, 2);
    await settled('resource 2 again');
    assert.equal(windowMismatches(compositor, 2), 0, 'the rebuilt copy is pixel-exact');
    const stats = plugin.stats();
    assert.ok(stats.copyBuffers <= maxBuffers);
    t.diagnostic(
      `maxBuffers ${maxBuffers}: peak fd growth ${peakFdGrowth}, peak copy buffers ` +
        `${peakCopyBuffers}, ${stats.copyEvictions} evicted, ${stats.copyMappings} mappings live`,
    );
    return {
      peakFdGrowth,
      peakCopyBuffers,
      copyBuffersMade: stats.fallbacks,
      evictions: stats.copyEvictions,
    };
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
    assert.equal(plugin.stats().copyBuffers, 0, 'every copy buffer destroyed');
    assert.equal(plugin.stats().copyMappings, 0, 'every mapping gone');
    assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
  }
}

test('copy buffers are kept per device in a bounded LRU; evicted ones free their fds', async (t) => {
  const bounded = await cycle(t, 4);
  // 12 resources + one shown again = 13 copy buffers made; at most 4 alive at a time. The
  // cycle evicts 8; head 1's window closing frees room for the 13th.
  assert.equal(bounded.copyBuffersMade, RESOURCES + 1);
  assert.equal(bounded.peakCopyBuffers, 4);
  assert.equal(bounded.evictions, RESOURCES - 4);

  const unbounded = await cycle(t, 1000);
  assert.equal(unbounded.evictions, 0);
  assert.equal(unbounded.peakCopyBuffers, RESOURCES);
  // Each live copy buffer holds fds (the compositor's pool); the bound keeps them down.
  assert.ok(
    unbounded.peakFdGrowth >= bounded.peakFdGrowth + (RESOURCES - 4) / 2,
    `fds: ${bounded.peakFdGrowth} bounded, ${unbounded.peakFdGrowth} unbounded`,
  );
  assert.ok(bounded.peakFdGrowth <= 4 + 8, `fd growth ${bounded.peakFdGrowth} stays small`);
});
