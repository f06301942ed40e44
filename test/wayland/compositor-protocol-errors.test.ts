// Client input the example compositor must refuse with the exact protocol error: wl_shm pools and
// buffers, wl_surface scale/transform/size, xdg_surface configure rules, wp_viewport values and
// wl_subcompositor cycles. One fresh connection per case; every request of a case and the
// roundtrip's sync leave in one message (see compositor-dmabuf.test.ts for why).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { Connection, ProtocolError, type Registry } from '../../protocol-xml/runtime/client.js';
import {
  WlCompositorProxy,
  WlShmFormat,
  WlShmProxy,
  WlSubcompositorProxy,
  type WlOutputTransform,
} from '../../build/protocols/wayland.js';
import { XdgWmBaseProxy } from '../../build/protocols/xdg_shell.js';
import { WpViewporterProxy } from '../../build/protocols/viewporter.js';
import { createCompositor } from '../../examples/compositor/index.js';

interface Case {
  name: string;
  interfaceName: string;
  code: number;
  run(registry: Registry, connection: Connection): Promise<void> | void;
}

/** Runs `body` with a memfd of `size` bytes (closed after: libwayland dups what it sends). */
function withMemfd<T>(size: number, body: (memfd: number) => T): T {
  const memfd = fd.memfdCreate('protocol-errors', true);
  try {
    fd.ftruncate(memfd, size);
    return body(memfd);
  } finally {
    fd.close(memfd);
  }
}

function shmBuffer(registry: Registry, width: number, height: number) {
  const shm = registry.bindFirst(WlShmProxy, 1);
  return withMemfd(width * height * 4, (memfd) => {
    const pool = shm.createPool(memfd, width * height * 4);
    return pool.createBuffer(0, width, height, width * 4, WlShmFormat.xrgb8888);
  });
}

const cases: Case[] = [
  {
    name: 'wl_shm: pool larger than its file',
    interfaceName: 'wl_shm',
    code: 2,
    run: (registry) => {
      const shm = registry.bindFirst(WlShmProxy, 1);
      withMemfd(4096, (memfd) => shm.createPool(memfd, 8192));
    },
  },
  {
    name: 'wl_shm_pool: stride below a row',
    interfaceName: 'wl_shm_pool',
    code: 1,
    run: (registry) => {
      const shm = registry.bindFirst(WlShmProxy, 1);
      withMemfd(4096, (memfd) =>
        shm.createPool(memfd, 4096).createBuffer(0, 16, 16, 63, WlShmFormat.xrgb8888),
      );
    },
  },
  {
    name: 'wl_shm_pool: buffer past the pool (32-bit overflow attempt)',
    interfaceName: 'wl_shm_pool',
    code: 1,
    run: (registry) => {
      const shm = registry.bindFirst(WlShmProxy, 1);
      withMemfd(4096, (memfd) =>
        shm
          .createPool(memfd, 4096)
          .createBuffer(0x7ffffff0, 16, 0x10000, 0x10000, WlShmFormat.xrgb8888),
      );
    },
  },
  {
    name: 'wl_shm_pool: a format it did not advertise (NV12)',
    interfaceName: 'wl_shm_pool',
    code: 0,
    run: (registry) => {
      const shm = registry.bindFirst(WlShmProxy, 1);
      withMemfd(4096, (memfd) =>
        shm.createPool(memfd, 4096).createBuffer(0, 16, 16, 64, WlShmFormat.nv12),
      );
    },
  },
  {
    name: 'wl_shm_pool: shrinking resize',
    interfaceName: 'wl_shm_pool',
    code: 1,
    run: (registry) => {
      const shm = registry.bindFirst(WlShmProxy, 1);
      withMemfd(4096, (memfd) => shm.createPool(memfd, 4096).resize(1024));
    },
  },
  {
    name: 'wl_surface: buffer scale 0',
    interfaceName: 'wl_surface',
    code: 0,
    run: (registry) => registry.bindFirst(WlCompositorProxy, 4).createSurface().setBufferScale(0),
  },
  {
    name: 'wl_surface: transform 8',
    interfaceName: 'wl_surface',
    code: 1,
    run: (registry) =>
      registry
        .bindFirst(WlCompositorProxy, 4)
        .createSurface()
        .setBufferTransform(8 as WlOutputTransform),
  },
  {
    name: 'wl_surface: odd buffer at scale 2',
    interfaceName: 'wl_surface',
    code: 2,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      surface.attach(shmBuffer(registry, 15, 16), 0, 0);
      surface.setBufferScale(2);
      surface.commit();
    },
  },
  {
    name: 'xdg_surface: buffer before the first configure was acknowledged',
    interfaceName: 'xdg_surface',
    code: 3,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      const xdgSurface = registry.bindFirst(XdgWmBaseProxy, 1).getXdgSurface(surface);
      xdgSurface.getToplevel();
      surface.attach(shmBuffer(registry, 16, 16), 0, 0);
      surface.commit();
    },
  },
  {
    name: 'xdg_surface: ack of a serial never sent',
    interfaceName: 'xdg_surface',
    code: 4,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      const xdgSurface = registry.bindFirst(XdgWmBaseProxy, 1).getXdgSurface(surface);
      xdgSurface.getToplevel();
      xdgSurface.ackConfigure(123456);
    },
  },
  {
    name: 'xdg_surface: commit without a role object',
    interfaceName: 'xdg_surface',
    code: 1,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      registry.bindFirst(XdgWmBaseProxy, 1).getXdgSurface(surface);
      surface.commit();
    },
  },
  {
    name: 'wp_viewporter: a second viewport for one surface',
    interfaceName: 'wp_viewporter',
    code: 0,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      const viewporter = registry.bindFirst(WpViewporterProxy, 1);
      viewporter.getViewport(surface);
      viewporter.getViewport(surface);
    },
  },
  {
    name: 'wp_viewport: negative source',
    interfaceName: 'wp_viewport',
    code: 0,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      registry.bindFirst(WpViewporterProxy, 1).getViewport(surface).setSource(-5, 0, 10, 10);
    },
  },
  {
    name: 'wp_viewport: source outside the buffer',
    interfaceName: 'wp_viewport',
    code: 2,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      registry.bindFirst(WpViewporterProxy, 1).getViewport(surface).setSource(8, 8, 16, 16);
      surface.attach(shmBuffer(registry, 16, 16), 0, 0);
      surface.commit();
    },
  },
  {
    name: 'wl_subcompositor: a surface as its own parent',
    interfaceName: 'wl_subcompositor',
    code: 0,
    run: (registry) => {
      const surface = registry.bindFirst(WlCompositorProxy, 4).createSurface();
      registry.bindFirst(WlSubcompositorProxy, 1).getSubsurface(surface, surface);
    },
  },
];

test('invalid client requests get their exact protocol errors', async (t) => {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 320, height: 240, refreshMhz: 60000 }],
    socket: false,
    log: () => {},
  });
  try {
    for (const testCase of cases) {
      await t.test(testCase.name, async () => {
        const connection = Connection.connectToFd(compositor.connectClient().fd);
        try {
          const registry = await connection.registry();
          await testCase.run(registry, connection);
          await connection.roundtrip();
          assert.fail('the compositor accepted it');
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
          assert.equal(error.info.interfaceName, testCase.interfaceName, error.message);
          assert.equal(error.info.code, testCase.code, error.message);
        } finally {
          connection.disconnect();
        }
      });
    }
  } finally {
    await compositor.close();
  }
  assert.equal(fd.openFdCount(), baseline, 'no fd left behind by refused clients');
});
