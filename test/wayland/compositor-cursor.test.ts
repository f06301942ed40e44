// The example compositor draws the pointer's cursor: a client with pointer focus sets a cursor
// surface with wl_pointer.set_cursor, and screenshots show its pixels at the pointer minus the
// hotspot, over the windows (alpha-blended). Asserted pixel by pixel: a stale serial is ignored,
// the cursor follows the pointer, wl_surface.offset moves the hotspot, new content shows, focus
// changes drop it, a destroyed cursor surface goes; the scene's top layer is what the DRM
// back-end's cursor plane takes (at the same place). Then guestfb: a guest cursor first shown as
// a subsurface (no pointer yet) moves onto the pointer when it enters, at the guest's hotspot,
// with no copy left behind and no protocol error (set_cursor on the subsurface's surface was one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { Connection, type Registry } from '../../protocol-xml/runtime/client.js';
import {
  WlCompositorProxy,
  WlSeatProxy,
  WlShmFormat,
  WlShmProxy,
  type WlBufferProxy,
} from '../../build/protocols/wayland.js';
import { XdgWmBaseProxy } from '../../build/protocols/xdg_shell.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { planeFormatSet, splitCursorLayer } from '../../examples/compositor/drm/scanout.js';
import { Fourcc, Modifier } from '../../examples/compositor/dmabuf/formats.js';
import { createGuestfbPlugin } from '../../plugin/index.js';
import { PatternSource, solidCursor } from '../../plugin/sources/pattern.js';
import { settleUntil } from '../helpers/wait.js';
import { pixelsOf } from '../helpers/pixels.js';

const OUTPUT = 'HEADLESS-1';
const WINDOW_COLOR = 0x336699;

type Shot = ReturnType<typeof decodePng>;

function shot(compositor: Compositor): Shot {
  return decodePng(compositor.screenshot(OUTPUT));
}

/** A wl_shm buffer of `pixels` (ARGB8888 words, row by row). */
function shmBuffer(registry: Registry, width: number, pixels: number[]): WlBufferProxy {
  const shm = registry.bindFirst(WlShmProxy, 1);
  const bytes = new Uint8Array(new Uint32Array(pixels).buffer);
  const memfd = fd.memfdCreate('cursor-test', true);
  try {
    fd.ftruncate(memfd, bytes.byteLength);
    fd.pwrite(memfd, bytes, 0);
    const pool = shm.createPool(memfd, bytes.byteLength);
    const buffer = pool.createBuffer(
      0,
      width,
      pixels.length / width,
      width * 4,
      WlShmFormat.argb8888,
    );
    pool.destroy();
    return buffer;
  } finally {
    fd.close(memfd);
  }
}

test('wl_pointer.set_cursor: drawn at the pointer minus the hotspot, over the window', async () => {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 200, height: 120, refreshMhz: 60000 }],
    socket: false,
    background: 0x000000,
    log: () => undefined,
  });
  const connection = Connection.connectToFd(compositor.connectClient().fd);
  try {
    const registry = await connection.registry();
    const wlCompositor = registry.bindFirst(WlCompositorProxy, 5);
    const wmBase = registry.bindFirst(XdgWmBaseProxy, 1);
    const seat = registry.bindFirst(WlSeatProxy, 8);
    const enters: number[] = [];
    const pointer = seat.getPointer().setListener({ enter: (serial) => enters.push(serial) });

    // A 100x60 window at (20, 10).
    const surface = wlCompositor.createSurface();
    const xdgSurface = wmBase.getXdgSurface(surface);
    xdgSurface.getToplevel().setTitle('cursor test');
    const configured = new Promise<number>((resolve) =>
      xdgSurface.setListener({ configure: (serial) => resolve(serial) }),
    );
    surface.commit();
    connection.flush();
    xdgSurface.ackConfigure(await configured);
    surface.attach(shmBuffer(registry, 100, new Array(6000).fill(0xff000000 | WINDOW_COLOR)), 0, 0);
    surface.commit();
    await connection.roundtrip();
    const window = compositor.scene.windows[0]!;
    window.x = 20;
    window.y = 10;
    compositor.scene.treeChanged(window.surface);

    // The cursor: 8x6 opaque red, its top-left pixel fully transparent, hotspot (2, 1).
    const red = new Array(48).fill(0xffff0000);
    red[0] = 0x00000000;
    const cursor = wlCompositor.createSurface();
    cursor.attach(shmBuffer(registry, 8, red), 0, 0);
    cursor.commit();

    compositor.seat.moveTo(50, 30);
    compositor.seat.flush();
    await connection.roundtrip();
    assert.equal(enters.length, 1, 'the pointer entered the window');
    assert.equal(pixelsOf(shot(compositor), 0xff0000).count, 0, 'no cursor before set_cursor');

    pointer.setCursor(enters[0]! + 1, cursor, 2, 1);
    await connection.roundtrip();
    assert.equal(pixelsOf(shot(compositor), 0xff0000).count, 0, 'a stale serial is ignored');

    pointer.setCursor(enters[0]!, cursor, 2, 1);
    await connection.roundtrip();
    let image = shot(compositor);
    assert.deepEqual(pixelsOf(image, 0xff0000), { x: 48, y: 29, width: 8, height: 6, count: 47 });
    assert.equal(image.pixel(48, 29), WINDOW_COLOR, 'the transparent pixel shows the window');
    // What the DRM back-end's cursor plane would take: the top layer, at the same place.
    const layers = compositor.scene.layers();
    assert.equal(layers.at(-1)!.buffer, compositor.scene.cursor!.surface.content);
    const split = splitCursorLayer(
      layers,
      200,
      120,
      { width: 64, height: 64 },
      planeFormatSet([{ format: Fourcc.ARGB8888, modifier: Modifier.LINEAR }]),
    );
    assert.deepEqual(
      [split.cursor?.layer.x, split.cursor?.layer.y, split.cursor?.width, split.cursor?.height],
      [48, 29, 8, 6],
    );
    assert.equal(split.rest.length, 1, 'the window stays on the primary plane');

    compositor.seat.moveTo(100, 60);
    compositor.seat.flush();
    await connection.roundtrip();
    image = shot(compositor);
    assert.deepEqual(pixelsOf(image, 0xff0000), { x: 98, y: 59, width: 8, height: 6, count: 47 });
    assert.equal(image.pixel(50, 30), WINDOW_COLOR, 'nothing left where it was');

    // wl_surface.offset(1, 1) moves the hotspot to (1, 0); new content (green) shows.
    const green = new Array(48).fill(0xff00ff00);
    cursor.offset(1, 1);
    cursor.attach(shmBuffer(registry, 8, green), 0, 0);
    cursor.damageBuffer(0, 0, 8, 6);
    cursor.commit();
    await connection.roundtrip();
    image = shot(compositor);
    assert.equal(pixelsOf(image, 0xff0000).count, 0);
    assert.deepEqual(pixelsOf(image, 0x00ff00), { x: 99, y: 60, width: 8, height: 6, count: 48 });

    // Off the window: no focus, no cursor (there is no default image); back in: the client sets
    // one again after its enter.
    compositor.seat.moveTo(190, 100);
    compositor.seat.flush();
    await connection.roundtrip();
    assert.equal(pixelsOf(shot(compositor), 0x00ff00).count, 0, 'gone with the focus');
    compositor.seat.moveTo(30, 20);
    compositor.seat.flush();
    await connection.roundtrip();
    assert.equal(enters.length, 2);
    assert.equal(pixelsOf(shot(compositor), 0x00ff00).count, 0, 'not shown again by itself');
    pointer.setCursor(enters[1]!, cursor, 0, 0);
    await connection.roundtrip();
    assert.deepEqual(pixelsOf(shot(compositor), 0x00ff00), {
      x: 30,
      y: 20,
      width: 8,
      height: 6,
      count: 48,
    });
    cursor.destroy();
    await connection.roundtrip();
    assert.equal(pixelsOf(shot(compositor), 0x00ff00).count, 0, 'a destroyed cursor surface goes');
    assert.equal(compositor.scene.cursor, null);
  } finally {
    connection.disconnect();
    await compositor.close();
  }
  assert.equal(fd.openFdCount(), baseline);
});

test("guestfb: the guest's cursor moves from a subsurface onto the pointer, at its hotspot", async () => {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 400, height: 300, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const source = new PatternSource({ width: 320, height: 200, rate: 0 });
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'guest', source }],
    udmabuf: false,
    log: (line) => logs.push(line),
  });
  // Colours the pattern has not (its blues are 0x40 and 0xc0, its box is full green).
  const ORANGE = 0xff8000;
  try {
    assert.equal(await compositor.use(plugin), true);
    await settleUntil(plugin, () => compositor.scene.windows.length === 1, 'the window mapped');
    const window = compositor.scene.windows[0]!;
    const cursor = plugin.presenter!.cursors()[0]!;
    // No pointer has entered yet: the guest's cursor is a subsurface at the guest's position.
    source.setCursor(40, 30, solidCursor(12, 10, 0xff000000 | ORANGE, 5, 3));
    const atGuestPosition = {
      x: window.x + 35,
      y: window.y + 27,
      width: 12,
      height: 10,
      count: 120,
    };
    let seen = pixelsOf(shot(compositor), ORANGE);
    await settleUntil(
      plugin,
      () =>
        JSON.stringify((seen = pixelsOf(shot(compositor), ORANGE))) ===
        JSON.stringify(atGuestPosition),
      `a subsurface cursor at the guest's position (last seen ${JSON.stringify(seen)})`,
      { limitMs: 10_000 },
    );
    assert.equal(cursor.mode(), 'subsurface');

    // The pointer enters at window pixel (200, 150): the same image at the pointer, once.
    const [px, py] = [window.x + 200, window.y + 150];
    compositor.seat.moveTo(px, py);
    compositor.seat.flush();
    const expected = { x: px - 5, y: py - 3, width: 12, height: 10, count: 120 };
    await settleUntil(
      plugin,
      () =>
        JSON.stringify((seen = pixelsOf(shot(compositor), ORANGE))) === JSON.stringify(expected),
      `the cursor at the pointer (last seen ${JSON.stringify(seen)}; log ${logs.join('; ')})`,
      { limitMs: 10_000 },
    );
    assert.equal(cursor.mode(), 'pointer');
    assert.equal(compositor.scene.windows.length, 1, 'the window lives (no protocol error)');

    // The guest moves its cursor: the host pointer decides where it is drawn.
    source.setCursor(10, 10);
    compositor.seat.moveTo(px + 30, py - 20);
    compositor.seat.flush();
    const moved = { ...expected, x: px + 25, y: py - 23 };
    await settleUntil(
      plugin,
      () => JSON.stringify((seen = pixelsOf(shot(compositor), ORANGE))) === JSON.stringify(moved),
      `the cursor follows the pointer (last seen ${JSON.stringify(seen)})`,
      { limitMs: 10_000 },
    );
    // A new image with another hotspot, while the pointer is inside.
    source.setCursor(10, 10, solidCursor(6, 6, 0xff10a0e0, 0, 0));
    await settleUntil(
      plugin,
      () => pixelsOf(shot(compositor), 0x10a0e0).count === 36,
      'the new image at the pointer',
      { limitMs: 10_000 },
    );
    assert.deepEqual(pixelsOf(shot(compositor), 0x10a0e0), {
      x: px + 30,
      y: py - 20,
      width: 6,
      height: 6,
      count: 36,
    });
    assert.equal(pixelsOf(shot(compositor), ORANGE).count, 0);
    // The pointer leaves the window: the guest's cursor goes with it.
    compositor.seat.moveTo(window.x + 330, 5);
    compositor.seat.flush();
    await settleUntil(
      plugin,
      () => pixelsOf(shot(compositor), 0x10a0e0).count === 0,
      'no cursor outside the window',
      { limitMs: 10_000 },
    );
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
  }
  assert.equal(fd.openFdCount(), baseline);
});
