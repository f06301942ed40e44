// Fd passing both ways, server-created objects, and fd accounting over many connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { native, type NativeProxy, type WireValue } from '../../native/index.js';
import {
  TestEvent,
  TestRequest,
  TestServer,
  bind,
  countFds,
  coreProtocolSpecs,
  fdWithText,
  listGlobals,
  readFd,
  roundtrip,
  testProtocolSpecs,
  useTempRuntimeDir,
} from './native-helpers.js';

native.defineInterfaces([...coreProtocolSpecs(), ...testProtocolSpecs]);

test('fds travel client -> server and server -> client; fd count returns to baseline', async () => {
  const runtime = useTempRuntimeDir();
  const baseline = countFds();
  const server = new TestServer('guestfb-fds-0', runtime.dir);
  const connection = native.connect(server.socket);
  try {
    const { registry, globals } = await listGlobals(connection);
    const proxy = bind(registry, globals, 'guestfb_test', 2);
    const received = new Promise<string>((resolve, reject) => {
      proxy.setDispatcher((opcode, args) => {
        if (opcode !== TestEvent.fd) return reject(new Error(`unexpected event ${opcode}`));
        const fd = args[0] as number;
        try {
          resolve(readFd(fd));
        } finally {
          closeSync(fd);
        }
      });
    });
    const outgoing = fdWithText(runtime.dir, 'client-request', 'bytes from the client');
    proxy.marshal(TestRequest.sendFd, [outgoing]);
    closeSync(outgoing); // borrowed: libwayland sent a duplicate
    assert.equal(await received, 'bytes from the server');
    assert.deepEqual(server.receivedTexts, ['bytes from the client']);
    assert.deepEqual(server.errors, []);
  } finally {
    connection.disconnect();
    server.destroy();
    runtime.remove();
  }
  await nextTurn();
  assert.equal(countFds(), baseline);
});

test('objects created by server events arrive as new proxies with decoded arguments', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-spawn-0', runtime.dir);
  const connection = native.connect(server.socket);
  try {
    const { registry, globals } = await listGlobals(connection);
    const proxy = bind(registry, globals, 'guestfb_test', 2);
    const hello = new Promise<{ child: NativeProxy; spawnedArgs: WireValue[]; args: WireValue[] }>(
      (resolve) => {
        proxy.setDispatcher((opcode, spawnedArgs) => {
          assert.equal(opcode, TestEvent.spawned);
          const child = spawnedArgs[0] as NativeProxy;
          child.setDispatcher((_childOpcode, args) => resolve({ child, spawnedArgs, args }));
        });
      },
    );
    proxy.marshal(TestRequest.spawn, ['hi there']);
    const { child, spawnedArgs, args } = await hello;
    assert.equal(child.interfaceName, 'guestfb_child');
    assert.equal(child.alive, true);
    assert.ok(child.id >= 0xff000000, `server-allocated id, got ${child.id}`);
    assert.equal(spawnedArgs[1], null);
    assert.deepEqual(args, ['hi there', 1.5, -7, new Uint8Array([1, 2, 3])]);

    // The child is a live object on both sides: destroy it by request.
    const serverChild = server.boundClients[0]!.getObject(child.id)!;
    assert.equal(serverChild.interfaceName, 'guestfb_child');
    child.marshal(0, [], undefined, undefined, true);
    await roundtrip(connection);
    assert.equal(serverChild.alive, false);
    assert.equal(child.alive, false);
    assert.deepEqual(server.errors, []);
  } finally {
    connection.disconnect();
    server.destroy();
    runtime.remove();
  }
});

test('1,000 connect/roundtrip/disconnect cycles leave the fd count at its baseline', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-cycles-0', runtime.dir);
  const cycles = 1000;
  let wanted = 1;
  let settled: () => void = () => {};
  server.onClientDestroyed = () => {
    if (server.destroyedClients === wanted) settled();
  };
  const clientsGone = (count: number) =>
    new Promise<void>((resolve) => {
      wanted = count;
      settled = resolve;
    });
  // One warm-up cycle first, so fds that Node or libuv open lazily are in the baseline.
  const warmupGone = clientsGone(1);
  const warmup = native.connect(server.socket);
  const first = await listGlobals(warmup);
  bind(first.registry, first.globals, 'guestfb_test', 2);
  await roundtrip(warmup);
  warmup.disconnect();
  await warmupGone;
  await nextTurn();
  const baseline = countFds();
  const allGone = clientsGone(cycles + 1);
  try {
    for (let i = 0; i < cycles; i++) {
      const connection = native.connect(server.socket);
      const { registry, globals } = await listGlobals(connection);
      const proxy = bind(registry, globals, 'guestfb_test', 2);
      proxy.marshal(TestRequest.ping, [i]);
      await roundtrip(connection);
      connection.disconnect();
      assert.equal(proxy.alive, false);
    }
    await allGone;
    await nextTurn();
    assert.equal(countFds(), baseline);
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});
