// linux-dmabuf against the example compositor, from a client built on the generated proxies:
// every invalid request of the checklist ends the connection with its exact protocol error (one
// fresh connection per case), and a memfd-backed buffer is shown pixel-exact.
//
// Note: libuv reports POLLERR on a watched fd as UV_EBADF; when the compositor drops a client
// while unread client data is still queued (the kernel then resets the socket), the native
// client currently reports that EBADF instead of reading the protocol error already waiting in
// its socket. Sending each bad request together with the roundtrip's sync avoids the reset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd, Seal } from '../../native/fd.js';
import { Connection, ProtocolError } from '../../protocol-xml/runtime/client.js';
import { WlCompositorProxy } from '../../build/protocols/wayland.js';
import { XdgWmBaseProxy } from '../../build/protocols/xdg_shell.js';
import {
  ZwpLinuxBufferParamsV1Proxy,
  ZwpLinuxDmabufV1Proxy,
} from '../../build/protocols/linux_dmabuf_unstable_v1.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { Fourcc, fourcc } from '../../examples/compositor/dmabuf/formats.js';
import { ParamsError } from '../../examples/compositor/dmabuf/params.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { poll } from '../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';
const W = 32;
const H = 16;

function startCompositor(): Compositor {
  return createCompositor({
    outputs: [{ name: OUTPUT, width: 320, height: 240, refreshMhz: 60000 }],
    socket: false,
    background: 0x000000,
    log: () => {},
  });
}

/** A memfd of `size` bytes (optionally filled and sealed). Caller owns it. */
function memfd(size: number, contents?: Uint8Array, seals = 0): number {
  const file = fd.memfdCreate('dmabuf-test', true);
  fd.ftruncate(file, size);
  if (contents) fd.pwrite(file, contents, 0);
  if (seals) fd.addSeals(file, seals);
  return file;
}

interface Session {
  connection: Connection;
  dmabuf: ZwpLinuxDmabufV1Proxy;
  params: ZwpLinuxBufferParamsV1Proxy;
  /** Adds a plane from a fresh memfd (closed here after sending: libwayland dups it). */
  add(plane: number, size: number, offset: number, stride: number, modifier?: bigint): void;
}

async function session(compositor: Compositor): Promise<Session> {
  const connection = Connection.connectToFd(compositor.connectClient().fd);
  const registry = await connection.registry();
  const dmabuf = registry.bindFirst(ZwpLinuxDmabufV1Proxy, 4);
  const params = dmabuf.createParams();
  return {
    connection,
    dmabuf,
    params,
    add(plane, size, offset, stride, modifier = 0n) {
      const file = memfd(size);
      try {
        params.add(
          file,
          plane,
          offset,
          stride,
          Number(modifier >> 32n),
          Number(modifier & 0xffffffffn),
        );
        // Not flushed here: the request and the roundtrip's sync leave in one message, so the
        // compositor has read everything when it drops the client (see the note at the top).
      } finally {
        fd.close(file);
      }
    },
  };
}

/** Resolves with the protocol error that ends the connection (fails if a roundtrip succeeds). */
async function expectProtocolError(connection: Connection): Promise<ProtocolError> {
  try {
    await connection.roundtrip();
  } catch (error) {
    assert.ok(error instanceof ProtocolError, String(error));
    return error;
  } finally {
    connection.disconnect();
  }
  assert.fail('the compositor accepted an invalid request');
}

const X_TILED = 0x0100000000000001n;

const cases: [string, number, (s: Session) => void][] = [
  [
    'ALREADY_USED: create after create_immed',
    ParamsError.ALREADY_USED,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0);
      s.params.create(W, H, Fourcc.XRGB8888, 0);
    },
  ],
  ['PLANE_IDX: plane 4', ParamsError.PLANE_IDX, (s) => s.add(4, 4096, 0, W * 4)],
  [
    'PLANE_SET: plane 0 twice',
    ParamsError.PLANE_SET,
    (s) => {
      s.add(0, 4096, 0, W * 4);
      s.add(0, 4096, 0, W * 4);
    },
  ],
  [
    'modifier differs between planes',
    ParamsError.INVALID_FORMAT,
    (s) => {
      s.add(0, W * H, 0, W);
      s.add(1, W * H, 0, W, X_TILED);
    },
  ],
  [
    'INCOMPLETE: no planes',
    ParamsError.INCOMPLETE,
    (s) => s.params.createImmed(W, H, Fourcc.XRGB8888, 0),
  ],
  [
    'INCOMPLETE: a gap (planes 0 and 2)',
    ParamsError.INCOMPLETE,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.add(2, W * H * 4, 0, W * 4);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'INCOMPLETE: NV12 with one plane',
    ParamsError.INCOMPLETE,
    (s) => {
      s.add(0, W * H * 2, 0, W);
      s.params.createImmed(W, H, Fourcc.NV12, 0);
    },
  ],
  [
    'INVALID_FORMAT: unknown fourcc',
    ParamsError.INVALID_FORMAT,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.params.createImmed(W, H, fourcc('YUYV'), 0);
    },
  ],
  [
    'INVALID_FORMAT: modifier not advertised',
    ParamsError.INVALID_FORMAT,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4, X_TILED);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'INVALID_DIMENSIONS: zero width',
    ParamsError.INVALID_DIMENSIONS,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.params.createImmed(0, H, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'INVALID_DIMENSIONS: negative height',
    ParamsError.INVALID_DIMENSIONS,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.params.create(W, -1, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'OUT_OF_BOUNDS: fd one byte short',
    ParamsError.OUT_OF_BOUNDS,
    (s) => {
      s.add(0, W * H * 4 - 1, 0, W * 4);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'OUT_OF_BOUNDS: stride * height overflows 32 bits',
    ParamsError.OUT_OF_BOUNDS,
    (s) => {
      s.add(0, W * H * 4, 0, 0x80000000);
      s.params.createImmed(W, 2, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'OUT_OF_BOUNDS: offset past the end',
    ParamsError.OUT_OF_BOUNDS,
    (s) => {
      s.add(0, W * H * 4, 0xfffffff0, W * 4);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0);
    },
  ],
  [
    'unknown flags on create_immed: INVALID_WL_BUFFER',
    ParamsError.INVALID_WL_BUFFER,
    (s) => {
      s.add(0, W * H * 4, 0, W * 4);
      s.params.createImmed(W, H, Fourcc.XRGB8888, 0x10);
    },
  ],
];

test('each invalid linux-dmabuf request gets its exact protocol error', async (t) => {
  const compositor = startCompositor();
  const baseline = fd.openFdCount();
  try {
    for (const [name, code, run] of cases) {
      await t.test(name, async () => {
        const s = await session(compositor);
        run(s);
        const error = await expectProtocolError(s.connection);
        assert.equal(error.info.interfaceName, 'zwp_linux_buffer_params_v1', error.message);
        assert.equal(error.info.objectId, s.params.id);
        assert.equal(error.info.code, code, error.message);
      });
    }
    // Let the compositor notice the hang-ups, then count: nothing of the 15 sessions is left.
    await poll(() => compositor.stats().clients === 0, { limitMs: 100, intervalMs: 20 });
    assert.equal(compositor.stats().clients, 0);
    assert.equal(fd.openFdCount(), baseline, 'no fd leaked by failed imports');
  } finally {
    await compositor.close();
  }
});

test('create answers created or failed; nothing fatal for an import failure', async () => {
  const compositor = startCompositor();
  try {
    const s = await session(compositor);
    const events: string[] = [];
    s.params.setListener({
      created: (buffer) => events.push(`created ${buffer.interfaceName}`),
      failed: () => events.push('failed'),
    });
    s.add(0, W * H * 4, 0, W * 4);
    s.params.create(W, H, Fourcc.XRGB8888, 0);
    await s.connection.roundtrip();
    const second = s.dmabuf.createParams();
    second.setListener({
      failed: () => events.push('failed'),
      created: () => events.push('created'),
    });
    const file = memfd(W * H * 4);
    second.add(file, 0, 0, W * 4, 0, 0);
    fd.close(file);
    second.create(W, H, Fourcc.XRGB8888, 0x40); // unknown flag: an import failure
    await s.connection.roundtrip();
    assert.deepEqual(events, ['created wl_buffer', 'failed']);
    assert.ok(s.connection.connected);
    s.connection.disconnect();
  } finally {
    await compositor.close();
  }
});

test('v4 feedback and v3 modifier events describe the same formats', async () => {
  const compositor = startCompositor();
  try {
    const connection = Connection.connectToFd(compositor.connectClient().fd);
    const registry = await connection.registry();
    const global = registry.find('zwp_linux_dmabuf_v1');
    assert.equal(global?.version, 4);
    const v3 = registry.bindFirst(ZwpLinuxDmabufV1Proxy, 3);
    const modifiers: string[] = [];
    v3.setListener({
      modifier: (format, hi, lo) =>
        modifiers.push(`${format.toString(16)}:${((BigInt(hi) << 32n) | BigInt(lo)).toString(16)}`),
    });
    const v4 = registry.bindFirst(ZwpLinuxDmabufV1Proxy, 4);
    const v4Events: string[] = [];
    v4.setListener({
      format: () => v4Events.push('format'),
      modifier: () => v4Events.push('modifier'),
    });
    const feedback = v4.getDefaultFeedback();
    const table: string[] = [];
    let indices: number[] = [];
    let tableSeals = 0;
    let done = false;
    feedback.setListener({
      formatTable: (tableFd, size) => {
        const bytes = new Uint8Array(size);
        fd.pread(tableFd, bytes, 0);
        tableSeals = fd.getSeals(tableFd);
        fd.close(tableFd);
        const view = new DataView(bytes.buffer);
        for (let at = 0; at < size; at += 16) {
          table.push(
            `${view.getUint32(at, true).toString(16)}:${view.getBigUint64(at + 8, true).toString(16)}`,
          );
        }
      },
      trancheFormats: (array) => {
        indices = [...new Uint16Array(array.buffer, array.byteOffset, array.byteLength / 2)];
      },
      done: () => {
        done = true;
      },
    });
    await connection.roundtrip();
    assert.ok(done);
    assert.deepEqual(v4Events, [], 'v4 sends no format/modifier events');
    assert.equal(tableSeals, Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
    assert.deepEqual(indices.map((i) => table[i]).sort(), [...modifiers].sort());
    assert.ok(table.includes(`${Fourcc.XRGB8888.toString(16)}:0`));
    connection.disconnect();
  } finally {
    await compositor.close();
  }
});

test('a memfd-backed XRGB8888 LINEAR buffer (create_immed) is shown pixel-exact', async () => {
  const compositor = startCompositor();
  const baseline = fd.openFdCount();
  try {
    const connection = Connection.connectToFd(compositor.connectClient().fd);
    const registry = await connection.registry();
    const wlCompositor = registry.bindFirst(WlCompositorProxy, 4);
    const wmBase = registry.bindFirst(XdgWmBaseProxy, 1);
    wmBase.setListener({ ping: (serial) => wmBase.pong(serial) });
    const dmabuf = registry.bindFirst(ZwpLinuxDmabufV1Proxy, 4);

    const surface = wlCompositor.createSurface();
    const xdgSurface = wmBase.getXdgSurface(surface);
    const toplevel = xdgSurface.getToplevel();
    toplevel.setTitle('dmabuf test');
    let configureSerial = -1;
    xdgSurface.setListener({ configure: (serial) => (configureSerial = serial) });
    surface.commit();
    await connection.roundtrip();
    assert.ok(configureSerial >= 0, 'initial configure');
    xdgSurface.ackConfigure(configureSerial);

    // A stride wider than a row, and every pixel distinct.
    const stride = W * 4 + 16;
    const pixels = new Uint8Array(stride * H);
    const expected = (x: number, y: number) => ((x * 7) << 16) | ((y * 13) << 8) | ((x + y) * 3);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        new DataView(pixels.buffer).setUint32(y * stride + x * 4, expected(x, y), true);
      }
    }
    const file = memfd(pixels.byteLength, pixels, Seal.SHRINK);
    const params = dmabuf.createParams();
    params.add(file, 0, 0, stride, 0, 0);
    fd.close(file);
    const buffer = params.createImmed(W, H, Fourcc.XRGB8888, 0);
    params.destroy();
    surface.attach(buffer, 0, 0);
    surface.damageBuffer(0, 0, W, H);
    const frame = surface.frame();
    const shown = new Promise<void>((resolve) => frame.setListener({ done: () => resolve() }));
    surface.commit();
    connection.flush();
    await shown; // the tick after the commit composed it

    const window = compositor.scene.windows[0];
    assert.ok(window, 'the toplevel is mapped');
    const png = decodePng(compositor.screenshot(OUTPUT));
    let differing = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (png.pixel(window.x + x, window.y + y) !== expected(x, y)) differing++;
      }
    }
    assert.equal(differing, 0, `${differing} of ${W * H} pixels differ`);
    assert.equal(png.pixel(window.x + W, window.y), 0x000000, 'background right of the window');
    connection.disconnect();
    await poll(() => compositor.stats().clients === 0, { limitMs: 100, intervalMs: 20 });
    assert.equal(compositor.scene.windows.length, 0, 'the window went with its client');
    assert.equal(fd.openFdCount(), baseline, 'the dma-buf fd was closed with its client');
  } finally {
    await compositor.close();
  }
});
