// Plugins of the example compositor: in-process clients on a socketpair. A working plugin draws
// a window (wl_shm + xdg-shell through the generated proxies); a plugin that throws or rejects is
// contained: use() resolves false, its client is destroyed, the compositor goes on, no fd leaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { Connection } from '../../protocol-xml/runtime/client.js';
import { WlCompositorProxy, WlShmFormat, WlShmProxy } from '../../build/protocols/wayland.js';
import { XdgWmBaseProxy } from '../../build/protocols/xdg_shell.js';
import { createCompositor, type Plugin } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';

const OUTPUT = 'HEADLESS-1';
const BACKGROUND = 0x000000;

/** A plugin that shows a solid 40x30 window of `color` through wl_shm. */
function solidWindowPlugin(color: number): Plugin & { connection: Connection | null } {
  const plugin = {
    name: 'solid-window',
    connection: null as Connection | null,
    async start({ waylandFd, signal }: { waylandFd: number; signal: AbortSignal }) {
      const connection = Connection.connectToFd(waylandFd);
      plugin.connection = connection;
      signal.addEventListener('abort', () => connection.disconnect());
      const registry = await connection.registry();
      const compositor = registry.bindFirst(WlCompositorProxy, 4);
      const shm = registry.bindFirst(WlShmProxy, 1);
      const wmBase = registry.bindFirst(XdgWmBaseProxy, 1);
      wmBase.setListener({ ping: (serial) => wmBase.pong(serial) });
      const surface = compositor.createSurface();
      const xdgSurface = wmBase.getXdgSurface(surface);
      xdgSurface.getToplevel().setTitle('plugin window');
      const configured = new Promise<number>((resolve) =>
        xdgSurface.setListener({ configure: (serial) => resolve(serial) }),
      );
      surface.commit();
      connection.flush();
      xdgSurface.ackConfigure(await configured);

      const [width, height] = [40, 30];
      const memfd = fd.memfdCreate('plugin-pool', true);
      try {
        fd.ftruncate(memfd, width * height * 4);
        fd.pwrite(memfd, new Uint8Array(new Uint32Array(width * height).fill(color).buffer), 0);
        const pool = shm.createPool(memfd, width * height * 4);
        const buffer = pool.createBuffer(0, width, height, width * 4, WlShmFormat.xrgb8888);
        pool.destroy();
        surface.attach(buffer, 0, 0);
        surface.damageBuffer(0, 0, width, height);
        surface.commit();
        await connection.roundtrip();
      } finally {
        fd.close(memfd);
      }
    },
    stop() {
      plugin.connection?.disconnect();
    },
  };
  return plugin;
}

test('plugins: a working one draws; throwing and rejecting ones are contained', async () => {
  const logs: string[] = [];
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 320, height: 240, refreshMhz: 60000 }],
    socket: false,
    background: BACKGROUND,
    log: (message) => logs.push(message),
  });
  try {
    const throwing: Plugin = {
      name: 'throws',
      start({ waylandFd }) {
        fd.close(waylandFd);
        throw new Error('boom at start');
      },
    };
    assert.equal(await compositor.use(throwing), false);
    assert.ok(logs.some((line) => line.includes('plugin throws failed to start: boom at start')));

    let aborted = false;
    const rejecting: Plugin = {
      name: 'rejects',
      async start({ waylandFd, signal }) {
        const connection = Connection.connectToFd(waylandFd);
        signal.addEventListener('abort', () => {
          aborted = true;
          connection.disconnect();
        });
        await connection.registry();
        throw new Error('late failure');
      },
    };
    assert.equal(await compositor.use(rejecting), false);
    assert.ok(aborted, 'the plugin was told through its signal');
    assert.ok(logs.some((line) => line.includes('plugin rejects failed to start: late failure')));

    const working = solidWindowPlugin(0x3366cc);
    assert.equal(await compositor.use(working), true);
    const window = compositor.scene.windows[0];
    assert.ok(window, 'the plugin window is mapped');
    const png = decodePng(compositor.screenshot(OUTPUT));
    assert.equal(png.pixel(window.x, window.y), 0x3366cc);
    assert.equal(png.pixel(window.x + 39, window.y + 29), 0x3366cc);
    assert.equal(png.pixel(window.x + 40, window.y + 29), BACKGROUND);
    assert.equal(compositor.stats().clients, 1, 'only the working plugin is connected');
  } finally {
    await compositor.close();
  }
  assert.equal(fd.openFdCount(), baseline, 'plugin connections and the compositor closed all');
});
