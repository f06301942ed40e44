// The native client against Debian's weston (a compositor nobody here wrote), headless.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import {
  native,
  isSystemError,
  type NativeClientConnection,
  type ProtocolErrorInfo,
} from '../../native/index.js';
import {
  bind,
  coreProtocolSpecs,
  listGlobals,
  roundtrip,
  run,
  useTempRuntimeDir,
} from './native-helpers.js';

native.defineInterfaces(coreProtocolSpecs());

/** Connects once weston listens; weston gives no readiness signal, so retry on ENOENT/ECONNREFUSED
 * until it does or exits. */
async function connectWhenReady(
  socket: string,
  exited: () => boolean,
): Promise<NativeClientConnection> {
  for (;;) {
    try {
      return native.connect(socket);
    } catch (error) {
      if (!isSystemError(error) || !['ENOENT', 'ECONNREFUSED'].includes(error.code)) throw error;
      if (exited()) throw new Error('weston exited before listening');
      await delay(50);
    }
  }
}

test('native client lists weston globals and completes async roundtrips', async () => {
  const runtime = useTempRuntimeDir();
  const socket = 'guestfb-weston-0';
  const weston = run(
    'weston',
    [
      '--backend=headless-backend.so',
      `--socket=${socket}`,
      '--idle-time=0',
      '--shell=kiosk-shell.so',
      '--no-config',
      '--width=640',
      '--height=480',
    ],
    { ...process.env, XDG_RUNTIME_DIR: runtime.dir },
  );
  let exited = false;
  void weston.done.then(() => (exited = true));
  let connection: NativeClientConnection | undefined;
  try {
    connection = await connectWhenReady(socket, () => exited);
    const errors: ProtocolErrorInfo[] = [];
    connection.onError((info) => errors.push(info));
    assert.equal(connection.connected, true);
    assert.equal(connection.display.id, 1);
    assert.equal(connection.display.interfaceName, 'wl_display');

    const { registry, globals } = await listGlobals(connection);
    const names = globals.map((g) => g.interfaceName);
    for (const expected of ['wl_compositor', 'wl_shm', 'xdg_wm_base', 'wl_output']) {
      assert.ok(names.includes(expected), `${expected} missing from ${names.join(', ')}`);
    }
    assert.equal(new Set(globals.map((g) => g.name)).size, globals.length);

    // Bind a few globals and read their events back through another roundtrip.
    const formats: number[] = [];
    const shm = bind(registry, globals, 'wl_shm', 1);
    shm.setDispatcher((opcode, args) => {
      if (opcode === 0) formats.push(args[0] as number);
    });
    const modes: { flags: number; width: number; height: number; refresh: number }[] = [];
    const output = bind(registry, globals, 'wl_output', 2);
    output.setDispatcher((opcode, args) => {
      if (opcode === 1) {
        const [flags, width, height, refresh] = args as number[];
        modes.push({ flags: flags!, width: width!, height: height!, refresh: refresh! });
      }
    });
    const compositor = bind(registry, globals, 'wl_compositor', 4);
    const surface = compositor.marshal(0, [null])!;
    assert.equal(surface.interfaceName, 'wl_surface');
    assert.equal(surface.version, 4);
    assert.ok(surface.id > 1);

    const serial = await roundtrip(connection);
    assert.equal(typeof serial, 'number');
    assert.ok(formats.includes(0) && formats.includes(1), `formats ${formats.join(',')}`);
    assert.deepEqual(
      modes.filter((m) => m.flags & 0x1).map((m) => [m.width, m.height]),
      [[640, 480]],
    );

    surface.marshal(0, [], undefined, undefined, true); // wl_surface.destroy
    assert.equal(surface.alive, false);
    // wl_output.release is since version 3; the binding refuses it on a version 2 proxy.
    assert.throws(() => output.marshal(0, [], undefined, undefined, true), {
      code: 'ERR_WAYLAND_VERSION',
    });
    assert.equal(output.alive, true);
    await roundtrip(connection);
    assert.deepEqual(errors, []);
    assert.equal(connection.connected, true);
  } finally {
    connection?.disconnect();
    assert.equal(connection?.connected ?? false, false);
    weston.child.kill('SIGTERM');
    await weston.done;
    runtime.remove();
  }
});
