/**
 * The presenter's reaction to what a guest does besides flushing: switching scanout to a
 * buffer of another size (the window follows), backing detached and re-attached (buffers and
 * dma-bufs dropped, rebuilt on the next flush), resources destroyed, heads disabled and the
 * source disconnecting. A scripted source over PatternGuests, in the example compositor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { UdmabufExporter, nativeUdmabufSyscalls } from '../../plugin/dmabuf/index.js';
import { createGuestfbPlugin, runStandalone } from '../../plugin/index.js';
import { PatternGuest, patternPixel } from '../../plugin/sources/pattern.js';
import type { HeadInfo, Rect, ScanoutInfo, SourceResource } from '../../plugin/sources/types.js';
import { HandDrivenSource } from '../helpers/hand-driven-source.js';
import { poll, settleUntil } from '../helpers/wait.js';
import { useTempRuntimeDir } from './native-helpers.js';

const OUTPUT = 'HEADLESS-1';
const [OUT_W, OUT_H] = [320, 200];

/** The example compositor with one output, no log; listening on `socket` when named. */
function quietCompositor(socket: string | false = false): Compositor {
  return createCompositor({
    outputs: [{ name: OUTPUT, width: OUT_W, height: OUT_H, refreshMhz: 60000 }],
    socket,
    log: () => undefined,
  });
}

/** A source whose every event the test triggers by hand. */
class ScriptedSource extends HandDrivenSource {
  private current: ScanoutInfo | null = null;

  constructor() {
    super([{ id: 0, width: OUT_W, height: OUT_H, x: 0, y: 0, enabled: true, name: 'scripted' }]);
  }

  addGuest(id: number, width: number, height: number, frame: number): void {
    // Offset 0 of the memfd: the stand-in udmabuf below can wrap it.
    const guest = new PatternGuest({ width, height, layout: 'contiguous', firstPage: 0 });
    guest.drawFrame(frame);
    this.guests.set(id, guest);
  }

  setHeads(heads: HeadInfo[]): void {
    this.headList = heads;
    this.emit('headsChanged', heads);
  }

  /** Resources that claim more backing than their memfd has (a hostile or buggy guest). */
  readonly overclaim = new Set<number>();
  /** Resources whose backing the guest has not attached (yet). */
  readonly detached = new Set<number>();

  override resource(id: number): SourceResource | undefined {
    return super.resource(id, (ranges) =>
      this.detached.has(id)
        ? []
        : this.overclaim.has(id)
          ? ranges.map((r) => ({ ...r, length: r.length + 64 * 4096 }))
          : ranges,
    );
  }

  scanout(headId: number): ScanoutInfo | null {
    return headId === 0 ? this.current : null;
  }

  show(id: number | null): void {
    const resource = id === null ? undefined : this.resource(id);
    this.current = resource ? this.scanoutOf(0, resource) : null;
    this.emit('scanoutSet', 0, this.current);
  }

  flush(rect: Rect): void {
    this.emit('flush', 0, [rect]);
  }
}

function windowMismatches(compositor: Compositor, guest: PatternGuest, frame: number): number {
  const window = compositor.scene.windows[0];
  assert.ok(window, 'a window is mapped');
  const image = decodePng(compositor.screenshot(OUTPUT));
  // The compositor keeps a window where it was mapped; compare the part on the output.
  const visibleWidth = Math.min(guest.width, OUT_W - window.x);
  const visibleHeight = Math.min(guest.height, OUT_H - window.y);
  assert.ok(visibleWidth > 0 && visibleHeight > 0, 'part of the window is visible');
  let differing = 0;
  for (let y = 0; y < visibleHeight; y++) {
    for (let x = 0; x < visibleWidth; x++) {
      const expected = patternPixel(x, y, frame, guest.width, guest.height) & 0xffffff;
      if (image.pixel(window.x + x, window.y + y) !== expected) differing++;
    }
  }
  return differing;
}

test('scanout switches, backing changes, destroyed resources, heads and disconnects', async () => {
  const baseline = fd.openFdCount();
  const compositor = quietCompositor();
  const exporter = UdmabufExporter.open({
    syscalls: {
      ...nativeUdmabufSyscalls,
      open: () => fd.eventfd(0),
      create: (_device, range) => fd.dup(range.memfd),
    },
    limits: { listLimit: 1024, sizeLimitMb: 64, sizeLimitBytes: 64 << 20, assumed: [] },
  });
  const source = new ScriptedSource();
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'scripted-guest', source }],
    udmabuf: exporter,
    log: (line) => logs.push(line),
  });
  try {
    source.addGuest(1, 160, 100, 3);
    source.addGuest(2, OUT_W, OUT_H, 8);
    source.show(1);
    assert.equal(await compositor.use(plugin), true, logs.join('; '));
    const view = () => plugin.presenter!.windows()[0];
    const frames = () => plugin.stats().framesPresented;
    await settleUntil(plugin, () => frames() >= 1 && !view().pacer.waitingForFrame, 'first frame');
    assert.equal(view().buffer?.width, 160);
    assert.equal(windowMismatches(compositor, source.guests.get(1)!, 3), 0);
    assert.equal(plugin.stats().dmabufsLive, 1);

    // The guest switches to a bigger buffer (a mode change): the window follows its size.
    source.show(2);
    await settleUntil(plugin, () => frames() >= 2 && !view().pacer.waitingForFrame, 'mode change');
    assert.equal(view().buffer?.width, OUT_W);
    assert.equal(view().buffer?.height, OUT_H);
    assert.equal(windowMismatches(compositor, source.guests.get(2)!, 8), 0);
    assert.equal(plugin.stats().dmabufsLive, 2, 'resource 1 keeps its dma-buf for a switch back');

    // Backing re-attached (new generation): the dma-buf is dropped; the old wl_buffer stays on
    // screen until the next flush brings the rebuilt one.
    const before = view().buffer;
    source.emit('backingChanged', source.resource(2)!);
    assert.equal(view().buffer, before);
    assert.equal(plugin.stats().dmabufsLive, 1);
    source.guests.get(2)!.drawFrame(9);
    source.flush({ x: 0, y: 0, width: OUT_W, height: OUT_H });
    await settleUntil(
      plugin,
      () => frames() >= 3 && !view().pacer.waitingForFrame,
      'rebuilt buffer',
    );
    assert.equal(view().buffer?.path, 'dmabuf');
    assert.notEqual(view().buffer, before);
    assert.equal(plugin.stats().dmabufsLive, 2);
    assert.equal(windowMismatches(compositor, source.guests.get(2)!, 9), 0);

    // Resource 1 destroyed: its cached buffer and dma-buf go.
    source.emit('resourceDestroyed', 1);
    assert.equal(plugin.stats().dmabufsLive, 1);

    // The scanout is disabled (unmap) and set again: the window goes through configure again.
    source.show(null);
    await settleUntil(plugin, () => compositor.stats().windows === 0, 'unmapped');
    source.show(2);
    await settleUntil(
      plugin,
      () => compositor.stats().windows === 1 && frames() >= 4,
      'mapped again',
    );
    await settleUntil(plugin, () => !view().pacer.waitingForFrame, 'frame');
    assert.equal(windowMismatches(compositor, source.guests.get(2)!, 9), 0);

    // The head is disabled: its window goes; enabled again: it comes back with the scanout.
    source.setHeads([{ ...source.heads()[0], enabled: false }]);
    await plugin.settle();
    assert.equal(plugin.presenter!.windows().length, 0);
    await settleUntil(plugin, () => compositor.stats().windows === 0, 'window unmapped');
    source.setHeads([{ ...source.heads()[0], enabled: true }]);
    await settleUntil(plugin, () => compositor.stats().windows === 1, 'window back');
    assert.equal(windowMismatches(compositor, source.guests.get(2)!, 9), 0);

    // The scanout comes before the backing: nothing to show. The backing arriving makes no
    // buffer either; the guest's next flush does.
    source.addGuest(3, 200, 120, 5);
    source.detached.add(3);
    source.show(3);
    assert.equal(view().buffer, null);
    const liveBefore = plugin.stats().dmabufsLive;
    source.detached.delete(3);
    source.emit('backingChanged', source.resource(3)!);
    assert.equal(view().buffer, null, 'no buffer before the flush');
    assert.equal(plugin.stats().dmabufsLive, liveBefore, 'no dma-buf before the flush');
    const framesBefore = frames();
    source.flush({ x: 0, y: 0, width: 200, height: 120 });
    assert.equal(view().buffer?.width, 200, 'the flush made the buffer');
    assert.equal(plugin.stats().dmabufsLive, liveBefore + 1);
    await settleUntil(
      plugin,
      () => frames() > framesBefore && !view().pacer.waitingForFrame,
      'first flush after the backing',
    );
    assert.equal(windowMismatches(compositor, source.guests.get(3)!, 5), 0);

    // A resource shown without any backing event before it: its dma-buf, made at the scanout,
    // still goes when the source disconnects.
    source.addGuest(4, 160, 100, 6);
    source.show(4);
    assert.equal(view().buffer?.path, 'dmabuf', 'the scanout made the buffer');
    assert.equal(plugin.stats().dmabufsLive, liveBefore + 2);

    source.emit('disconnected', 'test');
    assert.equal(plugin.presenter!.windows().length, 0);
    assert.equal(plugin.stats().dmabufsLive, 0);
    assert.equal(plugin.stats().bytesCopied, 0);
    assert.equal(plugin.stats().fallbackReason, null);
  } finally {
    plugin.stop();
    assert.equal(source.listenerCount(), 0, 'the plugin stopped listening');
    await compositor.close();
    source.close();
    exporter.dispose();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('the compositor going away stops the plugin and frees everything', async () => {
  const baseline = fd.openFdCount();
  const compositor = quietCompositor();
  const source = new ScriptedSource();
  source.addGuest(1, 64, 48, 1);
  source.show(1);
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'doomed', source }],
    udmabuf: false,
    log: () => undefined,
  });
  try {
    assert.equal(await compositor.use(plugin), true);
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 1, 'first frame');
    // The compositor drops our client (aborting the plugin's signal and hanging up the
    // socket): the plugin must stop and stop listening to its sources.
    await compositor.close();
    await poll(() => plugin.presenter === null, { limitMs: 30_000, intervalMs: 5 });
    assert.equal(plugin.presenter, null, 'stopped');
    assert.equal(source.listenerCount(), 0);
    // A flush after that reaches nobody and throws nothing.
    source.flush({ x: 0, y: 0, width: 64, height: 48 });
  } finally {
    plugin.stop();
    source.close();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('standalone: a hung-up connection is reported once and the plugin stops', async () => {
  const runtime = useTempRuntimeDir();
  const runtimeDir = runtime.dir;
  const baseline = fd.openFdCount();
  const compositor = quietCompositor('guestfb-hangup');
  const source = new ScriptedSource();
  source.addGuest(1, 64, 48, 1);
  source.show(1);
  const errors: Error[] = [];
  try {
    const plugin = await runStandalone({
      display: path.join(runtimeDir, 'guestfb-hangup'),
      sources: [{ name: 'standalone', source }],
      udmabuf: false,
      log: () => undefined,
      onError: (error) => errors.push(error),
    });
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 1, 'first frame');
    await compositor.close();
    await poll(() => plugin.presenter === null, { limitMs: 30_000, intervalMs: 5 });
    assert.equal(plugin.presenter, null, 'stopped');
    assert.equal(errors.length, 1);
    assert.equal(source.listenerCount(), 0);
    plugin.stop();
  } finally {
    await compositor.close();
    source.close();
    runtime.remove();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('backing that claims more than its memfd holds is refused, not mapped', async () => {
  const baseline = fd.openFdCount();
  const compositor = quietCompositor();
  const source = new ScriptedSource();
  source.addGuest(1, 64, 48, 1);
  source.overclaim.add(1);
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'hostile', source }],
    udmabuf: false,
    log: (line) => logs.push(line),
  });
  try {
    source.show(1);
    assert.equal(await compositor.use(plugin), true);
    await plugin.settle();
    source.flush({ x: 0, y: 0, width: 64, height: 48 });
    await plugin.settle();
    assert.equal(plugin.presenter!.windows()[0].buffer, null);
    assert.ok(
      logs.some((line) => /ends past the end of fd/.test(line)),
      logs.join('; '),
    );
    assert.equal(plugin.stats().framesPresented, 0);
    // Once the guest describes its memory truthfully, the next flush shows it.
    source.overclaim.delete(1);
    source.flush({ x: 0, y: 0, width: 64, height: 48 });
    await settleUntil(plugin, () => plugin.stats().framesPresented >= 1, 'a frame');
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('a cursor flood (1,500 updates in one loop turn) is coalesced; the connection lives', async () => {
  const compositor = quietCompositor();
  const source = new ScriptedSource();
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'cursor-flood', source }],
    log: (line) => logs.push(line),
  });
  try {
    source.addGuest(1, 160, 100, 3);
    source.show(1);
    assert.equal(await compositor.use(plugin), true, logs.join('; '));
    const frames = () => plugin.stats().framesPresented;
    const view = () => plugin.presenter!.windows()[0];
    await settleUntil(plugin, () => frames() >= 1 && !view().pacer.waitingForFrame, 'first frame');
    const cursor = plugin.presenter!.cursors()[0]!;
    const UPDATES = 1500;
    // One synchronous burst: the compositor (same process) reads nothing until it ends. Every
    // update carries a new 64x64 image, as a guest re-uploading its cursor would.
    for (let i = 0; i < UPDATES; i++) {
      const pixels = new Uint8Array(64 * 64 * 4).fill(i & 0xff);
      source.emit('cursor', {
        headId: 0,
        x: i % 150,
        y: 7,
        image: {
          resourceId: 1000 + i,
          hotX: 0,
          hotY: 0,
          width: 64,
          height: 64,
          fourcc: 0x34325241, // ARGB8888
          pixels,
        },
      });
    }
    assert.equal(cursor.counters.updates, UPDATES);
    await settleUntil(plugin, () => cursor.counters.batches >= 1, 'the coalesced cursor batch');
    // The window still takes frames: the connection survived the burst.
    source.guests.get(1)!.drawFrame(4);
    source.flush({ x: 0, y: 0, width: 160, height: 100 });
    await settleUntil(
      plugin,
      () => frames() >= 2 && !view().pacer.waitingForFrame,
      'a later frame',
    );
    // Only the cursor differs from the guest's frame: the last update's image at its position
    // (x 149, y 7 on a subsurface), 11 of its 64 columns inside the 160-pixel window.
    if (cursor.mode() === 'subsurface') {
      assert.equal(windowMismatches(compositor, source.guests.get(1)!, 4), 11 * 64);
    }
    assert.ok(
      cursor.counters.batches <= 3,
      `${UPDATES} updates went out as ${cursor.counters.batches} batches`,
    );
    assert.equal(
      logs.filter((line) => /connection failed|errno 11/.test(line)).length,
      0,
      logs.join('\n'),
    );
    console.log(
      `cursor flood: ${UPDATES} updates -> ${cursor.counters.batches} batches ` +
        `(${cursor.counters.deferredWhileBlocked} deferred while the socket was full), mode ${cursor.mode()}`,
    );
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
  }
});
