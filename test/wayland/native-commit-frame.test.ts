// NativeProxy.commitFrame (attach + damage_buffer per box + commit in one call into the addon,
// the plugin's per-frame commit) against the example compositor: the compositor repaints
// exactly the boxes sent, and every bad argument is refused before anything is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { Connection } from '../../protocol-xml/runtime/client.js';
import { WlCompositorProxy, WlShmProxy } from '../../build/protocols/wayland.js';
import { XdgWmBaseProxy } from '../../build/protocols/xdg_shell.js';
import { createCompositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';

const OUTPUT = 'HEADLESS-1';
const W = 64;
const H = 32;
const XRGB8888 = 1; // wl_shm format
const OLD = 0x204060;
const NEW = 0xc08020;

test('commitFrame: attach, the damage boxes and commit in one call; bad arguments refused', async () => {
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 320, height: 240, refreshMhz: 60000 }],
    socket: false,
    background: 0x000000,
    log: () => {},
  });
  const file = fd.memfdCreate('commit-frame-test', true);
  try {
    const connection = Connection.connectToFd(compositor.connectClient().fd);
    const registry = await connection.registry();
    const wlCompositor = registry.bindFirst(WlCompositorProxy, 4);
    const shm = registry.bindFirst(WlShmProxy, 1);
    const wmBase = registry.bindFirst(XdgWmBaseProxy, 1);
    wmBase.setListener({ ping: (serial) => wmBase.pong(serial) });
    const surface = wlCompositor.createSurface();
    const xdgSurface = wmBase.getXdgSurface(surface);
    xdgSurface.getToplevel().setTitle('commitFrame test');
    let configureSerial = -1;
    xdgSurface.setListener({ configure: (serial) => (configureSerial = serial) });
    surface.commit();
    await connection.roundtrip();
    xdgSurface.ackConfigure(configureSerial);

    fd.ftruncate(file, W * H * 4);
    const fill = (colour: number) => {
      const pixels = new Uint32Array(W * H).fill(colour);
      fd.pwrite(file, new Uint8Array(pixels.buffer), 0);
    };
    const pool = shm.createPool(file, W * H * 4);
    const buffer = pool.createBuffer(0, W, H, W * 4, XRGB8888);
    const frame = async (boxes: number[]) => {
      const done = new Promise<void>((resolve) =>
        surface.frame().setListener({ done: () => resolve() }),
      );
      surface.native.commitFrame(buffer.native, Int32Array.from(boxes), boxes.length / 4);
      connection.flush();
      await done;
    };

    fill(OLD);
    await frame([0, 0, W, H]);
    const window = compositor.scene.windows[0];
    assert.ok(window, 'the toplevel is mapped');
    // The whole buffer changes; two boxes say where, so only they are repainted.
    fill(NEW);
    const boxes = [4, 2, 20, 10, 40, 16, 64, 32];
    await frame(boxes);
    const inBox = (x: number, y: number) =>
      (x >= 4 && x < 20 && y >= 2 && y < 10) || (x >= 40 && y >= 16);
    const png = decodePng(compositor.screenshot(OUTPUT));
    let wrong = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (png.pixel(window.x + x, window.y + y) !== (inBox(x, y) ? NEW : OLD)) wrong++;
      }
    }
    assert.equal(wrong, 0, `${wrong} of ${W * H} pixels are not what the boxes say`);

    const native = surface.native;
    const call = (f: () => void) => assert.throws(f);
    assert.throws(
      () => wlCompositor.native.commitFrame(buffer.native, new Int32Array(4), 1),
      /commitFrame needs a wl_surface, not a wl_compositor/,
    );
    assert.throws(
      () => native.commitFrame(pool.native, new Int32Array(4), 1),
      /buffer must be a wl_buffer, got wl_shm_pool/,
    );
    assert.throws(
      () => native.commitFrame(buffer.native, new Uint32Array(4) as unknown as Int32Array, 1),
      /boxes must be an Int32Array/,
    );
    assert.throws(
      () => native.commitFrame(buffer.native, new Int32Array(4), 2),
      /count exceeds the boxes given/,
    );
    assert.throws(
      () => native.commitFrame(buffer.native, new Int32Array(65 * 4), 65),
      /count exceeds the boxes given \(or 64\)/,
    );
    assert.throws(
      () => native.commitFrame(buffer.native, Int32Array.from([10, 0, 5, 8]), 1),
      /a box ends before it starts/,
    );
    call(() => native.commitFrame({} as never, new Int32Array(4), 1));
    // Nothing of the refused calls went out: the connection is fine and the picture unchanged.
    await connection.roundtrip();
    assert.equal(connection.connected, true);
    const after = decodePng(compositor.screenshot(OUTPUT));
    assert.equal(after.pixel(window.x, window.y), OLD);
    // A detached buffer (null) is allowed: the window unmaps.
    native.commitFrame(null, new Int32Array(0), 0);
    await connection.roundtrip();
    assert.equal(compositor.scene.windows.length, 0, 'attach(null) unmapped the window');
    connection.disconnect();
  } finally {
    fd.close(file);
    await compositor.close();
  }
});
