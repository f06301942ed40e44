// Both sides from generated code in one process: a server built from generated resource classes
// (wl_compositor, wl_shm, wl_output, wl_seat globals) and a client built from generated proxies,
// connected by socket name through the runtime's Connection and Registry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { Display } from '../../protocol-xml/runtime/server.js';
import { Connection, ProtocolError } from '../../protocol-xml/runtime/client.js';
import {
  WlBufferProxy,
  WlBufferResource,
  WlCallbackResource,
  WlCompositorProxy,
  WlCompositorResource,
  WlDataDeviceManagerProxy,
  WlDataDeviceManagerResource,
  WlDataDeviceResource,
  WlDataOfferProxy,
  WlDataOfferResource,
  WlKeyboardKeymapFormat,
  WlKeyboardResource,
  WlOutputMode,
  WlOutputProxy,
  WlOutputResource,
  WlOutputSubpixel,
  WlOutputTransform,
  WlRegionResource,
  WlSeatCapability,
  WlSeatProxy,
  WlSeatResource,
  WlShmError,
  WlShmFormat,
  WlShmPoolResource,
  WlShmProxy,
  WlShmResource,
  WlSurfaceResource,
  isWlShmFormat,
  type WlBufferRequests,
} from '../../build/protocols/wayland.js';
import { useTempRuntimeDir } from './native-helpers.js';

const KEYMAP = 'xkb_keymap { test keymap from the generated server };\0';

/** Server-side state of one wl_buffer: its handler object, found again as resource.handlers. */
interface ServerBuffer extends WlBufferRequests {
  bytes: Uint8Array;
}

/** A small compositor from generated classes; records what its handlers saw. */
function startServer(display: Display) {
  const seen = {
    attached: [] as (WlBufferResource | null)[],
    attachedBytes: [] as number[][],
    damage: [] as number[][],
    commits: 0,
    surfacesDestroyed: 0,
    doneSentToOldOutput: [] as boolean[],
    mappings: [] as ArrayBuffer[],
  };
  WlCompositorResource.global(display, 5, () => ({
    createSurface: (compositor, id) => {
      const surface = WlSurfaceResource.create(compositor.client, compositor.version, id, {
        attach: (_surface, buffer) => {
          seen.attached.push(buffer);
          if (buffer) seen.attachedBytes.push([...(buffer.handlers as ServerBuffer).bytes]);
        },
        damage: () => {},
        damageBuffer: (_surface, x, y, width, height) => seen.damage.push([x, y, width, height]),
        frame: (resource, callbackId) => {
          const callback = WlCallbackResource.create(resource.client, 1, callbackId, {});
          callback.sendDone(4242);
          callback.destroy();
        },
        setOpaqueRegion: () => {},
        setInputRegion: () => {},
        setBufferTransform: () => {},
        setBufferScale: () => {},
        offset: () => {},
        commit: (resource) => {
          seen.commits++;
          const buffer = seen.attached[seen.attached.length - 1];
          if (buffer?.alive) buffer.sendRelease();
          assert.equal(resource.alive, true);
        },
      });
      surface.onDestroy(() => seen.surfacesDestroyed++);
    },
    createRegion: (compositor, id) => {
      WlRegionResource.create(compositor.client, 1, id, { add: () => {}, subtract: () => {} });
    },
  }));

  WlShmResource.global(display, 1, (shm) => {
    shm.sendFormat(WlShmFormat.argb8888);
    shm.sendFormat(WlShmFormat.xrgb8888);
    return {
      createPool: (resource, id, poolFd, size) => {
        if (size <= 0) {
          fd.close(poolFd);
          resource.postError(WlShmError.invalid_stride, `pool size ${size}`);
          return;
        }
        let memory: ArrayBuffer;
        try {
          memory = fd.mmap(poolFd, 0, size, false);
        } finally {
          fd.close(poolFd);
        }
        seen.mappings.push(memory);
        WlShmPoolResource.create(resource.client, resource.version, id, {
          createBuffer: (pool, bufferId, offset, width, height, stride, format) => {
            assert.equal(isWlShmFormat(format), true);
            const buffer: ServerBuffer = {
              bytes: new Uint8Array(memory, offset, stride * height),
            };
            assert.deepEqual([width, height], [2, 2]);
            WlBufferResource.create(pool.client, 1, bufferId, buffer);
          },
          resize: (pool) => pool.postError(WlShmError.invalid_fd, 'no resize'),
        });
      },
    };
  });

  WlOutputResource.global(display, 4, (output) => {
    output.sendGeometry(
      10,
      20,
      527,
      296,
      WlOutputSubpixel.none,
      'guestfb',
      'roundtrip screen',
      WlOutputTransform._90,
    );
    output.sendMode(WlOutputMode.current | WlOutputMode.preferred, 1280, 800, 60000);
    output.sendScale(2);
    output.sendName('RT-1');
    // wl_output.done is since 2: for an old resource the sender refuses (returns false).
    if (output.version < 2) seen.doneSentToOldOutput.push(output.sendDone());
    else assert.equal(output.sendDone(), true);
    return { release: () => {} };
  });

  WlSeatResource.global(display, 5, (seat) => {
    seat.sendCapabilities(WlSeatCapability.keyboard);
    seat.sendName('seat0');
    return {
      getPointer: (resource) => resource.postError(0, 'no pointer'),
      getTouch: (resource) => resource.postError(0, 'no touch'),
      getKeyboard: (resource, id) => {
        const keyboard = WlKeyboardResource.create(resource.client, resource.version, id, {});
        const keymapFd = fd.memfdCreate('keymap', true);
        try {
          const bytes = new TextEncoder().encode(KEYMAP);
          fd.ftruncate(keymapFd, bytes.length);
          fd.pwrite(keymapFd, bytes, 0);
          // Borrowed: libwayland dups it into the message.
          keyboard.sendKeymap(WlKeyboardKeymapFormat.xkb_v1, keymapFd, bytes.length);
        } finally {
          fd.close(keymapFd);
        }
        keyboard.sendRepeatInfo(25, 600);
      },
      release: () => {},
    };
  });
  // Selections: wl_data_device.data_offer creates a server-side object (new_id in an event).
  WlDataDeviceManagerResource.global(display, 3, () => ({
    createDataSource: (resource) => resource.postError(0, 'no sources'),
    getDataDevice: (manager, id, seat) => {
      assert.ok(seat instanceof WlSeatResource);
      const device = WlDataDeviceResource.create(manager.client, manager.version, id, {
        startDrag: () => {},
        setSelection: () => {},
      });
      const offer = WlDataOfferResource.create(manager.client, manager.version, 0, {
        accept: () => {},
        receive: (_offer, mimeType, pipeFd) => {
          try {
            fd.unixSend(pipeFd, new TextEncoder().encode(`contents as ${mimeType}`));
          } finally {
            fd.close(pipeFd);
          }
        },
        finish: () => {},
        setActions: () => {},
      });
      assert.equal(device.sendDataOffer(offer), true);
      offer.sendOffer('text/plain');
      offer.sendOffer('text/html');
      device.sendSelection(offer);
    },
  }));
  return seen;
}

/**
 * Runs `body` with a generated server (startServer) and one client connected to it on a socket
 * named `socketName`, then tears both down and checks the fd count is back at its baseline.
 */
async function withServerAndClient(
  socketName: string,
  body: (setup: {
    display: Display;
    seen: ReturnType<typeof startServer>;
    connection: Connection;
  }) => Promise<void>,
): Promise<void> {
  const runtime = useTempRuntimeDir();
  const baselineFds = fd.openFdCount();
  const display = Display.create();
  const seen = startServer(display);
  const connection = Connection.connect(display.addSocket(socketName));
  try {
    await body({ display, seen, connection });
  } finally {
    connection.disconnect();
    display.destroy();
    for (const mapping of seen.mappings) fd.munmap(mapping);
    runtime.remove();
  }
  assert.equal(fd.openFdCount(), baselineFds);
}

test('generated client and server talk: registry, bind, typed events, fds, since gating', async () => {
  await withServerAndClient('guestfb-gen-rt', async ({ display, seen, connection }) => {
    const serverErrors: unknown[] = [];
    display.onError((error) => serverErrors.push(error));
    const listenerErrors: unknown[] = [];
    connection.onListenerError((error) => listenerErrors.push(error));
    const registry = await connection.registry();
    assert.deepEqual(registry.globals, [
      { name: 1, interface: 'wl_compositor', version: 5 },
      { name: 2, interface: 'wl_shm', version: 1 },
      { name: 3, interface: 'wl_output', version: 4 },
      { name: 4, interface: 'wl_seat', version: 5 },
      { name: 5, interface: 'wl_data_device_manager', version: 3 },
    ]);

    // wl_output: typed event arguments, in order, done last.
    const events: unknown[][] = [];
    const output = registry.bindFirst(WlOutputProxy);
    assert.ok(output instanceof WlOutputProxy);
    assert.equal(output.version, 4);
    output.setListener({
      geometry: (...args) => events.push(['geometry', ...args]),
      mode: (flags, width, height, refresh) => events.push(['mode', flags, width, height, refresh]),
      scale: (factor) => events.push(['scale', factor]),
      name: (name) => events.push(['name', name]),
      done: () => events.push(['done']),
    });
    // An old client: version 1 has no done/scale/name, and no release request.
    const outputGlobal = registry.find(WlOutputProxy);
    assert.ok(outputGlobal);
    const oldOutput = registry.bind(outputGlobal, WlOutputProxy, 1);
    const oldEvents: string[] = [];
    oldOutput.setListener({
      geometry: () => oldEvents.push('geometry'),
      mode: () => oldEvents.push('mode'),
      done: () => oldEvents.push('done'),
    });
    await connection.roundtrip();
    assert.deepEqual(events, [
      [
        'geometry',
        10,
        20,
        527,
        296,
        WlOutputSubpixel.none,
        'guestfb',
        'roundtrip screen',
        WlOutputTransform._90,
      ],
      ['mode', 3, 1280, 800, 60000],
      ['scale', 2],
      ['name', 'RT-1'],
      ['done'],
    ]);
    assert.equal(oldOutput.version, 1);
    assert.deepEqual(oldEvents, ['geometry', 'mode']);
    assert.deepEqual(seen.doneSentToOldOutput, [false]);
    assert.throws(() => oldOutput.release(), /wl_output\.release needs version 3/);

    // wl_shm: formats, then a pool from a memfd (fd passed client -> server).
    const formats: number[] = [];
    const shm = registry.bindFirst(WlShmProxy).setListener({
      format: (format) => formats.push(format),
    });
    await connection.roundtrip();
    assert.deepEqual(formats, [WlShmFormat.argb8888, WlShmFormat.xrgb8888]);
    const poolFd = fd.memfdCreate('pool', true);
    const pixels = Uint8Array.from({ length: 16 }, (_, i) => i * 16 + 1);
    fd.ftruncate(poolFd, 4096);
    fd.pwrite(poolFd, pixels, 0);
    const pool = shm.createPool(poolFd, 4096);
    fd.close(poolFd); // borrowed by the request
    const buffer = pool.createBuffer(0, 2, 2, 8, WlShmFormat.xrgb8888);
    assert.ok(buffer instanceof WlBufferProxy);
    pool.destroy();
    assert.equal(pool.alive, false);
    let released = 0;
    buffer.setListener({ release: () => released++ });

    // wl_surface: object arguments, new_id requests, since-gated requests, destructor.
    const compositor = registry.bindFirst(WlCompositorProxy, 4);
    assert.equal(compositor.version, 4);
    const surface = compositor.createSurface();
    surface.attach(buffer, 0, 0);
    surface.damageBuffer(0, 0, 2, 2);
    const frameTimes: number[] = [];
    surface.frame().setListener({ done: (time) => frameTimes.push(time) });
    surface.commit();
    surface.attach(null, 0, 0);
    surface.commit();
    await connection.roundtrip();
    assert.equal(seen.attached.length, 2);
    assert.ok(seen.attached[0] instanceof WlBufferResource);
    assert.equal(seen.attached[1], null);
    assert.deepEqual(seen.attachedBytes, [[...pixels]]);
    assert.deepEqual(seen.damage, [[0, 0, 2, 2]]);
    assert.equal(seen.commits, 2);
    assert.deepEqual(frameTimes, [4242]);
    assert.equal(released, 1);
    surface.destroy();
    assert.equal(surface.alive, false);
    // The proxy's version (4) comes from the compositor: wl_surface.offset (since 5) throws.
    const second = compositor.createSurface();
    assert.throws(() => second.offset(0, 0), /wl_surface\.offset needs version 5/);
    await connection.roundtrip();
    assert.equal(seen.surfacesDestroyed, 1);

    // wl_keyboard: fds in events belong to the listener, or are closed when nobody listens.
    const seat = registry.bindFirst(WlSeatProxy, 5);
    const capabilities: number[] = [];
    seat.setListener({ capabilities: (caps) => capabilities.push(caps) });
    const keymaps: string[] = [];
    seat.getKeyboard().setListener({
      keymap: (format, keymapFd, size) => {
        assert.equal(format, WlKeyboardKeymapFormat.xkb_v1);
        const bytes = new Uint8Array(size);
        fd.pread(keymapFd, bytes, 0);
        fd.close(keymapFd);
        keymaps.push(new TextDecoder().decode(bytes));
      },
    });
    seat.getKeyboard(); // no listener: its keymap fd must not leak
    await connection.roundtrip();
    assert.deepEqual(capabilities, [WlSeatCapability.keyboard]);
    assert.deepEqual(keymaps, [KEYMAP]);

    buffer.destroy();
    second.destroy();
    await connection.roundtrip();
    assert.deepEqual(listenerErrors, []);
    assert.deepEqual(serverErrors, []);
  });
});

test('a protocol error from a generated server rejects the roundtrip with its details', async () => {
  await withServerAndClient('guestfb-gen-err', async ({ connection }) => {
    const registry = await connection.registry();
    const shm = registry.bindFirst(WlShmProxy);
    const poolFd = fd.memfdCreate('pool', true);
    shm.createPool(poolFd, 0);
    fd.close(poolFd);
    const failures: ProtocolError[] = [];
    connection.onError((error) => failures.push(error));
    await assert.rejects(connection.roundtrip(), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.info.code, WlShmError.invalid_stride);
      assert.equal(error.info.interfaceName, 'wl_shm');
      assert.equal(error.info.objectId, shm.id);
      return true;
    });
    assert.equal(failures.length, 1);
    assert.equal(connection.connected, false);
    await assert.rejects(connection.roundtrip(), ProtocolError);
  });
});

test('objects created by events arrive as typed proxies, and fds go both ways', async () => {
  await withServerAndClient('guestfb-gen-offer', async ({ connection }) => {
    const registry = await connection.registry();
    const seat = registry.bindFirst(WlSeatProxy, 5);
    const manager = registry.bindFirst(WlDataDeviceManagerProxy, 3);
    const offers: WlDataOfferProxy[] = [];
    const mimeTypes: string[] = [];
    let selection: WlDataOfferProxy | null | undefined;
    manager.getDataDevice(seat).setListener({
      dataOffer: (offer) => {
        assert.ok(offer instanceof WlDataOfferProxy);
        offers.push(offer.setListener({ offer: (mimeType) => mimeTypes.push(mimeType) }));
      },
      selection: (offer) => (selection = offer),
    });
    await connection.roundtrip();
    assert.equal(offers.length, 1);
    assert.equal(offers[0].version, 3);
    assert.deepEqual(mimeTypes, ['text/plain', 'text/html']);
    assert.equal(selection, offers[0], 'the selection names the same proxy object');

    const [readEnd, writeEnd] = fd.socketpair();
    try {
      offers[0].receive('text/plain', writeEnd);
      fd.close(writeEnd); // borrowed by the request
      await connection.roundtrip();
      const message = fd.unixRecv(readEnd, 256);
      assert.equal(new TextDecoder().decode(message?.data), 'contents as text/plain');
    } finally {
      fd.close(readEnd);
    }
    offers[0].destroy();
    await connection.roundtrip();
  });
});

test('a throwing request handler becomes an implementation error, and the server lives on', async () => {
  const runtime = useTempRuntimeDir();
  const baselineFds = fd.openFdCount();
  const display = Display.create();
  const serverErrors: unknown[] = [];
  display.onError((error) => serverErrors.push(error));
  WlCompositorResource.global(display, 5, () => ({
    createSurface: (compositor, id) => {
      // Version 6 is beyond wl_surface's XML version: the generated create refuses it.
      WlSurfaceResource.create(compositor.client, 6, id, {} as never);
    },
    createRegion: () => {
      throw new Error('regions are broken on purpose');
    },
  }));
  const socket = display.addSocket('guestfb-gen-throw');
  const first = Connection.connect(socket);
  const second = Connection.connect(socket);
  try {
    for (const [connection, request] of [
      [first, 'surface'],
      [second, 'region'],
    ] as const) {
      const registry = await connection.registry();
      const compositor = registry.bindFirst(WlCompositorProxy);
      if (request === 'surface') compositor.createSurface();
      else compositor.createRegion();
      await assert.rejects(connection.roundtrip(), (error: unknown) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.info.interfaceName, 'wl_display');
        assert.equal(error.info.code, 3); // WL_DISPLAY_ERROR_IMPLEMENTATION
        return true;
      });
    }
    assert.equal(serverErrors.length, 2);
    assert.match(String(serverErrors[0]), /RangeError: wl_surface: version 6 outside 1\.\.\d/);
    assert.match(String(serverErrors[1]), /regions are broken on purpose/);
    // The display still serves new clients.
    const third = Connection.connect(socket);
    try {
      const registry = await third.registry();
      assert.equal(registry.globals.length, 1);
    } finally {
      third.disconnect();
    }
  } finally {
    first.disconnect();
    second.disconnect();
    display.destroy();
    runtime.remove();
  }
  assert.equal(fd.openFdCount(), baselineFds);
});
