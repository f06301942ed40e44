// defineInterfaces: validation, late resolution of referenced names, redefinition rules; and
// exceptions in bind handlers and client event listeners.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { native, type InterfaceSpec, type ProtocolErrorInfo } from '../../native/index.js';
import {
  bind,
  coreProtocolSpecs,
  listGlobals,
  roundtrip,
  useTempRuntimeDir,
} from './native-helpers.js';

native.defineInterfaces(coreProtocolSpecs());

const parent: InterfaceSpec = {
  name: 'guestfb_late_parent',
  version: 1,
  requests: [{ name: 'make', signature: 'n', types: ['guestfb_late_child'] }],
  events: [{ name: 'pong', signature: 'u', types: [null] }],
};
const child: InterfaceSpec = {
  name: 'guestfb_late_child',
  version: 1,
  requests: [{ name: 'ping', signature: 'u', types: [null] }],
  events: [{ name: 'pong', signature: 'u', types: [null] }],
};

test('defineInterfaces validates specs and defines nothing when a spec is bad', () => {
  const bad = (spec: Partial<InterfaceSpec> & { name: string }) => ({
    version: 1,
    requests: [],
    events: [],
    ...spec,
  });
  assert.throws(
    () => native.defineInterfaces([bad({ name: 'guestfb_v0', version: 0 })]),
    RangeError,
  );
  assert.throws(
    () =>
      native.defineInterfaces([
        bad({ name: 'guestfb_ok_first' }),
        bad({ name: 'guestfb_sig', events: [{ name: 'e', signature: 'ux', types: [null, null] }] }),
      ]),
    TypeError,
  );
  assert.equal(native.hasInterface('guestfb_ok_first'), false, 'a failed call defines nothing');
  assert.throws(
    () =>
      native.defineInterfaces([
        bad({ name: 'guestfb_types', events: [{ name: 'e', signature: 'sun', types: [null] }] }),
      ]),
    /one entry per signature letter/,
  );
  assert.throws(
    () =>
      native.defineInterfaces([
        bad({ name: 'guestfb_typed_int', events: [{ name: 'e', signature: 'u', types: ['x'] }] }),
      ]),
    TypeError,
  );
  assert.throws(
    () =>
      native.defineInterfaces([
        bad({ name: 'guestfb_nullable', events: [{ name: 'e', signature: '?u', types: [null] }] }),
      ]),
    TypeError,
  );
  assert.throws(() =>
    native.defineInterfaces([bad({ name: 'guestfb_dup' }), bad({ name: 'guestfb_dup' })]),
  );
});

test('referenced names resolve when defined later; identical redefinition is a no-op', async () => {
  native.defineInterfaces([parent]);
  assert.equal(native.hasInterface('guestfb_late_parent'), true);
  assert.equal(native.hasInterface('guestfb_late_child'), false);
  native.defineInterfaces([child]);
  assert.equal(native.hasInterface('guestfb_late_child'), true);
  native.defineInterfaces([parent, child]);
  assert.throws(() => native.defineInterfaces([{ ...child, version: 2 }]), {
    code: 'ERR_WAYLAND_INTERFACE_REDEFINED',
  });

  // The late-resolved type works end to end: make(new_id guestfb_late_child), then child.ping.
  const runtime = useTempRuntimeDir();
  const display = native.createServerDisplay();
  const serverErrors: unknown[] = [];
  display.onError((error) => serverErrors.push(error));
  const socket = display.addSocket();
  assert.match(socket, /^wayland-\d+$/);
  display.createGlobal('guestfb_late_parent', 1, (client, version, id) => {
    client.createResource('guestfb_late_parent', version, id, (_opcode, args) => {
      const made = client.createResource(
        'guestfb_late_child',
        1,
        args[0] as number,
        (_opcode, a) => {
          made.postEvent(0, [(a[0] as number) + 1]);
        },
      );
    });
  });
  const connection = native.connect(socket);
  try {
    const { registry, globals } = await listGlobals(connection);
    const proxy = bind(registry, globals, 'guestfb_late_parent', 1);
    const made = proxy.marshal(0, [null])!;
    assert.equal(made.interfaceName, 'guestfb_late_child');
    const pong = new Promise<number>((resolve) =>
      made.setDispatcher((_opcode, args) => resolve(args[0] as number)),
    );
    made.marshal(0, [41]);
    assert.equal(await pong, 42);
    assert.deepEqual(serverErrors, []);
  } finally {
    connection.disconnect();
    display.destroy();
    runtime.remove();
  }
});

test('a throwing bind handler and a throwing event listener are reported, not fatal', async () => {
  native.defineInterfaces([
    {
      name: 'guestfb_echo',
      version: 1,
      requests: [{ name: 'ping', signature: 'u', types: [null] }],
      events: [{ name: 'pong', signature: 'u', types: [null] }],
    },
  ]);
  const runtime = useTempRuntimeDir();
  const display = native.createServerDisplay();
  const serverErrors: unknown[] = [];
  display.onError((error) => serverErrors.push(error));
  const socket = display.addSocket('guestfb-throwing-0');
  display.createGlobal('guestfb_echo', 1, (client, version, id) => {
    const echo = client.createResource('guestfb_echo', version, id, (_opcode, args) => {
      echo.postEvent(0, [args[0]!]);
    });
  });
  display.createGlobal('guestfb_echo', 1, () => {
    throw new Error('bind failure on purpose');
  });
  const good = native.connect(socket);
  const bad = native.connect(socket);
  try {
    // A listener that throws: reported through onListenerError; later events still arrive.
    const listenerErrors: unknown[] = [];
    good.onListenerError((error) => listenerErrors.push(error));
    const listed = await listGlobals(good);
    const echo = bind(listed.registry, listed.globals, 'guestfb_echo', 1);
    const pongs: number[] = [];
    echo.setDispatcher((_opcode, args) => {
      pongs.push(args[0] as number);
      if (pongs.length === 1) throw new Error('listener failure on purpose');
    });
    echo.marshal(0, [1]);
    echo.marshal(0, [2]);
    await roundtrip(good);
    assert.deepEqual(pongs, [1, 2]);
    assert.equal(listenerErrors.length, 1);
    assert.match(String(listenerErrors[0]), /listener failure on purpose/);
    assert.equal(good.connected, true);

    // Binding the second echo global runs the throwing bind handler.
    const failed = new Promise<ProtocolErrorInfo>((resolve) => bad.onError(resolve));
    const badListed = await listGlobals(bad);
    const second = badListed.globals.filter((g) => g.interfaceName === 'guestfb_echo')[1]!;
    badListed.registry.marshal(0, [second.name, 'guestfb_echo', 1, null]);
    const info = await failed;
    assert.equal(info.errno, os.constants.errno.EPROTO);
    assert.equal(info.code, 3);
    assert.match(info.message ?? '', /bind failure on purpose/);
    assert.equal(serverErrors.length, 1);
  } finally {
    good.disconnect();
    bad.disconnect();
    display.destroy();
    runtime.remove();
  }
});
