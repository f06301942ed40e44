// A compositor built only from generated server classes, driven by clients nobody here wrote:
// wayland-info (globals, typed events) and weston-simple-shm (shm pools passed as fds, xdg-shell
// across protocol modules, frame callbacks, buffer release), whose pixels we read back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import type { NativeClient } from '../../native/index.js';
import { Display } from '../../protocol-xml/runtime/server.js';
import {
  WlBufferResource,
  WlCallbackResource,
  WlCompositorResource,
  WlOutputMode,
  WlOutputResource,
  WlOutputSubpixel,
  WlOutputTransform,
  WlRegionResource,
  WlShmError,
  WlShmFormat,
  WlShmPoolResource,
  WlShmResource,
  WlSurfaceResource,
  isWlShmFormat,
  type WlBufferRequests,
  type WlSurfaceRequests,
} from '../../build/protocols/wayland.js';
import {
  XdgSurfaceResource,
  XdgToplevelResource,
  XdgWmBaseResource,
} from '../../build/protocols/xdg_shell.js';
import { assertServerInfo, run, useTempRuntimeDir, waylandInfo } from './native-helpers.js';

function addOutput(display: Display): void {
  WlOutputResource.global(display, 4, (output) => {
    output.sendGeometry(
      0,
      0,
      527,
      296,
      WlOutputSubpixel.unknown,
      'guestfb',
      'generated screen',
      WlOutputTransform.normal,
    );
    output.sendMode(WlOutputMode.current | WlOutputMode.preferred, 1280, 800, 60000);
    output.sendScale(1);
    output.sendName('GEN-1');
    output.sendDescription('generated test output');
    output.sendDone();
    return { release: () => {} };
  });
}

test('wayland-info sees globals and typed events of generated server classes', async () => {
  const runtime = useTempRuntimeDir();
  const display = Display.create();
  const errors: unknown[] = [];
  display.onError((error) => errors.push(error));
  try {
    const socket = display.addSocket('guestfb-gen-info');
    WlCompositorResource.global(display, 5, () => ({
      createSurface: () => assert.fail('wayland-info creates no surfaces'),
      createRegion: () => assert.fail('wayland-info creates no regions'),
    }));
    WlShmResource.global(display, 1, (shm) => {
      shm.sendFormat(WlShmFormat.argb8888);
      shm.sendFormat(WlShmFormat.xrgb8888);
      shm.sendFormat(WlShmFormat.xbgr8888);
      return {
        createPool: (resource, _id, poolFd) => {
          fd.close(poolFd);
          resource.postError(WlShmError.invalid_fd, 'no pools in this test');
        },
      };
    });
    addOutput(display);
    assert.deepEqual(
      display.globals.map((global) => [global.interfaceName, global.version, global.name]),
      [
        ['wl_compositor', 5, 1],
        ['wl_shm', 1, 2],
        ['wl_output', 4, 3],
      ],
    );

    assertServerInfo(await waylandInfo(socket, runtime.dir), {
      width: 1280,
      height: 800,
      model: 'generated screen',
      name: 'GEN-1',
    });
    assert.deepEqual(errors, []);
  } finally {
    display.destroy();
    runtime.remove();
  }
});

/** A shm pool: its memory mapped read-only (the client's fd is closed right after mapping). */
interface Pool {
  memory: ArrayBuffer;
  size: number;
}

/** The handler object of a wl_buffer doubles as its state (reachable as resource.handlers). */
interface ShmBuffer extends WlBufferRequests {
  pool: Pool;
  offset: number;
  width: number;
  height: number;
  stride: number;
}

test('weston-simple-shm draws through generated wl_shm, wl_surface and xdg-shell classes', async () => {
  const runtime = useTempRuntimeDir();
  const baselineFds = fd.openFdCount();
  const display = Display.create();
  const errors: unknown[] = [];
  display.onError((error) => errors.push(error));
  const mappings: ArrayBuffer[] = [];
  const wantedFrames = 3;
  const frames: { width: number; height: number; distinctPixels: number }[] = [];
  let clientGone: Promise<void> | null = null;
  let resolveEnough: () => void = () => {};
  const enough = new Promise<void>((resolve) => (resolveEnough = resolve));
  const surfaces: WlSurfaceResource[] = [];

  const makeSurface = (client: NativeClient, version: number, id: number) => {
    let pending: WlBufferResource | null = null;
    let attached: WlBufferResource | null = null;
    let callbacks: WlCallbackResource[] = [];
    const handlers: WlSurfaceRequests = {
      attach: (_surface, buffer) => {
        pending = buffer;
      },
      damage: () => {},
      damageBuffer: () => {},
      frame: (surface, callbackId) => {
        callbacks.push(WlCallbackResource.create(surface.client, 1, callbackId, {}));
      },
      setOpaqueRegion: () => {},
      setInputRegion: () => {},
      setBufferTransform: () => {},
      setBufferScale: () => {},
      offset: () => {},
      commit: () => {
        if (pending !== null) {
          const { pool, offset, width, height, stride } = pending.handlers as ShmBuffer;
          const pixels = new Uint32Array(pool.memory, offset, (stride / 4) * height);
          frames.push({ width, height, distinctPixels: new Set(pixels).size });
          // The pixels were read: hand the previous buffer back.
          if (attached !== null && attached !== pending) attached.sendRelease();
          attached = pending;
          pending = null;
          if (frames.length === wantedFrames) resolveEnough();
        }
        for (const callback of callbacks) {
          callback.sendDone(frames.length);
          callback.destroy();
        }
        callbacks = [];
      },
    };
    surfaces.push(WlSurfaceResource.create(client, version, id, handlers));
  };

  try {
    const socket = display.addSocket('guestfb-gen-shm');
    WlCompositorResource.global(display, 4, (compositor) => {
      clientGone ??= new Promise((resolve) => compositor.client.onDestroy(resolve));
      return {
        createSurface: (resource, id) => makeSurface(resource.client, resource.version, id),
        createRegion: (resource, id) => {
          WlRegionResource.create(resource.client, 1, id, { add: () => {}, subtract: () => {} });
        },
      };
    });
    WlShmResource.global(display, 1, (shm) => {
      shm.sendFormat(WlShmFormat.argb8888);
      shm.sendFormat(WlShmFormat.xrgb8888);
      return {
        createPool: (resource, id, poolFd, size) => {
          let pool: Pool;
          try {
            pool = { memory: fd.mmap(poolFd, 0, size, false), size };
          } finally {
            fd.close(poolFd);
          }
          mappings.push(pool.memory);
          WlShmPoolResource.create(resource.client, resource.version, id, {
            createBuffer: (poolResource, bufferId, offset, width, height, stride, format) => {
              if (!isWlShmFormat(format) || offset + stride * height > pool.size) {
                poolResource.postError(WlShmError.invalid_stride, 'bad buffer');
                return;
              }
              const buffer: ShmBuffer = { pool, offset, width, height, stride };
              WlBufferResource.create(poolResource.client, 1, bufferId, buffer);
            },
            resize: (poolResource) => poolResource.postError(WlShmError.invalid_fd, 'no resize'),
          });
        },
      };
    });
    XdgWmBaseResource.global(display, 1, () => ({
      createPositioner: (resource) => resource.postError(0, 'no popups here'),
      getXdgSurface: (wmBase, id, surface) => {
        assert.ok(surfaces.includes(surface), 'the wl_surface argument is our typed resource');
        XdgSurfaceResource.create(wmBase.client, wmBase.version, id, {
          getToplevel: (xdgSurface, toplevelId) => {
            const toplevel = XdgToplevelResource.create(
              xdgSurface.client,
              xdgSurface.version,
              toplevelId,
              {
                setParent: () => {},
                setTitle: () => {},
                setAppId: () => {},
                showWindowMenu: () => {},
                move: () => {},
                resize: () => {},
                setMaxSize: () => {},
                setMinSize: () => {},
                setMaximized: () => {},
                unsetMaximized: () => {},
                setFullscreen: () => {},
                unsetFullscreen: () => {},
                setMinimized: () => {},
              },
            );
            toplevel.sendConfigure(0, 0, new Uint8Array());
            xdgSurface.sendConfigure(display.nextSerial());
          },
          getPopup: (resource) => resource.postError(0, 'no popups here'),
          setWindowGeometry: () => {},
          ackConfigure: () => {},
        });
      },
      pong: () => {},
    }));

    const client = run('weston-simple-shm', [], {
      ...process.env,
      WAYLAND_DISPLAY: socket,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    await Promise.race([
      enough,
      client.done.then((r) => assert.fail(`weston-simple-shm exited early: ${r.stderr}`)),
    ]);
    client.child.kill('SIGTERM');
    await client.done;
    await clientGone;

    // The client may commit once more before SIGTERM lands.
    assert.ok(frames.length >= wantedFrames, `${frames.length} frames`);
    for (const frame of frames) {
      assert.deepEqual([frame.width, frame.height], [250, 250]);
      // simple-shm paints a moving pattern: many distinct colours, not a cleared buffer.
      assert.ok(frame.distinctPixels > 100, `only ${frame.distinctPixels} distinct pixels`);
    }
    assert.ok(surfaces.length > 0 && surfaces.every((surface) => !surface.alive));
    assert.deepEqual(errors, []);
  } finally {
    display.destroy();
    for (const mapping of mappings) fd.munmap(mapping);
    runtime.remove();
  }
  assert.equal(fd.openFdCount(), baselineFds);
});
