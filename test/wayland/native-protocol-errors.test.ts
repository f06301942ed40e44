// Protocol errors through the raw binding: malformed requests (raw bytes and our own client),
// exceptions in request handlers, argument validation, display teardown with live clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import {
  native,
  type NativeClient,
  type NativeClientConnection,
  type NativeProxy,
  type NativeResource,
  type ProtocolErrorInfo,
} from '../../native/index.js';
import {
  TestEvent,
  TestRequest,
  TestServer,
  bind,
  coreProtocolSpecs,
  listGlobals,
  roundtrip,
  testProtocolSpecs,
  useTempRuntimeDir,
} from './native-helpers.js';

native.defineInterfaces([...coreProtocolSpecs(), ...testProtocolSpecs]);

const { EINVAL, EPROTO } = os.constants.errno;
const WL_DISPLAY_ERROR_INVALID_OBJECT = 0;
const WL_DISPLAY_ERROR_INVALID_METHOD = 1;
const WL_DISPLAY_ERROR_IMPLEMENTATION = 3;

/** Sends raw request words on a fresh socket and parses the wl_display.error event back. */
async function rawRequest(
  runtimeDir: string,
  socket: string,
  words: number[],
): Promise<{ objectId: number; code: number; message: string }> {
  const connection = net.createConnection({ path: path.join(runtimeDir, socket) });
  await once(connection, 'connect');
  const request = Buffer.alloc(words.length * 4);
  words.forEach((word, i) => request.writeUInt32LE(word, i * 4));
  connection.end(request);
  const chunks: Buffer[] = [];
  for await (const chunk of connection) chunks.push(chunk as Buffer);
  const reply = Buffer.concat(chunks);
  assert.ok(reply.length >= 20, `short reply (${reply.length} bytes)`);
  assert.equal(reply.readUInt32LE(0), 1, 'error comes from wl_display');
  const sizeOpcode = reply.readUInt32LE(4);
  assert.equal(sizeOpcode & 0xffff, 0, 'opcode of wl_display.error');
  assert.equal(sizeOpcode >>> 16, reply.length, 'one message, then the server hangs up');
  const stringLength = reply.readUInt32LE(16);
  return {
    objectId: reply.readUInt32LE(8),
    code: reply.readUInt32LE(12),
    message: reply.toString('utf8', 20, 20 + stringLength - 1),
  };
}

function connectWithErrors(socket: string): {
  connection: NativeClientConnection;
  errors: ProtocolErrorInfo[];
  failed: Promise<ProtocolErrorInfo>;
} {
  const connection = native.connect(socket);
  const errors: ProtocolErrorInfo[] = [];
  const failed = new Promise<ProtocolErrorInfo>((resolve) => {
    connection.onError((info) => {
      errors.push(info);
      resolve(info);
    });
  });
  return { connection, errors, failed };
}

test('raw malformed requests get wl_display errors on the wire', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-raw-0', runtime.dir);
  try {
    // wl_display (object 1) has two requests: opcode 7 is unknown. Header: id, size<<16|opcode.
    const unknownOpcode = await rawRequest(runtime.dir, server.socket, [1, (8 << 16) | 7]);
    assert.equal(unknownOpcode.code, WL_DISPLAY_ERROR_INVALID_METHOD);
    assert.equal(unknownOpcode.objectId, 1);
    assert.match(unknownOpcode.message, /invalid method 7/);

    const noObject = await rawRequest(runtime.dir, server.socket, [55, (12 << 16) | 0, 0]);
    assert.equal(noObject.code, WL_DISPLAY_ERROR_INVALID_OBJECT);
    assert.match(noObject.message, /invalid object 55/);

    // wl_display.sync with a new_id that is not the next free id: its arguments are invalid.
    const badNewId = await rawRequest(runtime.dir, server.socket, [1, (12 << 16) | 0, 99]);
    assert.equal(badNewId.code, WL_DISPLAY_ERROR_INVALID_METHOD);
    assert.match(badNewId.message, /invalid arguments for wl_display@1\.sync/);
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});

test('our client gets ProtocolErrorInfo for unknown opcodes and unknown objects', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-err-0', runtime.dir);
  try {
    // The server creates the resource as guestfb_narrow (one request): our `fail` (opcode 1)
    // is unknown to it.
    {
      const { connection, errors, failed } = connectWithErrors(server.socket);
      const { registry, globals } = await listGlobals(connection);
      server.narrowNext = true;
      const test = bind(registry, globals, 'guestfb_test', 1);
      await roundtrip(connection);
      test.marshal(TestRequest.fail, []);
      const info = await failed;
      // libwayland maps wl_display's own INVALID_OBJECT/INVALID_METHOD errors to EINVAL.
      assert.equal(info.errno, EINVAL);
      assert.equal(info.code, WL_DISPLAY_ERROR_INVALID_METHOD);
      assert.equal(info.interfaceName, 'wl_display');
      assert.equal(info.objectId, 1);
      assert.match(info.message ?? '', /invalid method 1/);
      assert.equal(connection.connected, false);
      // Requests after the failure are dropped by libwayland, never sent; no second report.
      test.marshal(TestRequest.ping, [1]);
      connection.flush();
      assert.equal(errors.length, 1);
      connection.disconnect();
      assert.equal(test.alive, false);
      assert.equal(connection.display.alive, false);
    }
    // guestfb_ignored's bind creates nothing: a request on it names an unknown object.
    {
      const { connection, failed } = connectWithErrors(server.socket);
      const { registry, globals } = await listGlobals(connection);
      const ignored = bind(registry, globals, 'guestfb_ignored', 1);
      ignored.marshal(0, [5]);
      const info = await failed;
      assert.equal(info.errno, EINVAL);
      assert.equal(info.code, WL_DISPLAY_ERROR_INVALID_OBJECT);
      assert.equal(info.interfaceName, 'wl_display');
      assert.match(info.message ?? '', new RegExp(`invalid object ${ignored.id}`));
      connection.disconnect();
    }
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});

test('a throwing request handler costs only its own client an implementation error', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-throw-0', runtime.dir);
  const second = connectWithErrors(server.socket);
  try {
    const first = connectWithErrors(server.socket);
    const { registry, globals } = await listGlobals(first.connection);
    const test = bind(registry, globals, 'guestfb_test', 2);
    test.marshal(TestRequest.fail, []);
    const info = await first.failed;
    assert.equal(info.errno, EPROTO);
    assert.equal(info.code, WL_DISPLAY_ERROR_IMPLEMENTATION);
    assert.match(info.message ?? '', /handler failure on purpose/);
    first.connection.disconnect();

    assert.equal(server.errors.length, 1);
    const reported = server.errors[0]!;
    assert.match(String(reported.error), /handler failure on purpose/);
    assert.equal(reported.client, server.boundClients[0]);

    // The other client, connected before the failure, still works.
    const more = await listGlobals(second.connection);
    const other = bind(more.registry, more.globals, 'guestfb_test', 2);
    const pong = new Promise<number>((resolve) => {
      other.setDispatcher((opcode, args) => {
        if (opcode === TestEvent.pong) resolve(args[0] as number);
      });
    });
    other.marshal(TestRequest.ping, [0xfeedbeef]);
    assert.equal(await pong, 0xfeedbeef);
    await roundtrip(second.connection);
    assert.deepEqual(second.errors, []);
  } finally {
    second.connection.disconnect();
    server.destroy();
    runtime.remove();
  }
});

test('postEvent and marshal validate opcodes, versions and argument types', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-check-0', runtime.dir);
  const failures: unknown[] = [];
  server.postEventChecks = (resource: NativeResource) => {
    const attempt = (fn: () => void) => {
      try {
        fn();
        failures.push(null);
      } catch (error) {
        failures.push(error);
      }
    };
    attempt(() => resource.postEvent(99, []));
    attempt(() => resource.postEvent(TestEvent.lateEvent, [])); // since 2, resource is v1
    attempt(() => resource.postEvent(TestEvent.pong, []));
    attempt(() => resource.postEvent(TestEvent.pong, ['text']));
    attempt(() => resource.postEvent(TestEvent.pong, [-1]));
    attempt(() => resource.postEvent(TestEvent.spawned, [resource, null]));
    attempt(() => resource.postEvent(TestEvent.pong, [7]));
  };
  const { connection, errors } = connectWithErrors(server.socket);
  try {
    const { registry, globals } = await listGlobals(connection);
    const pongs: number[] = [];
    const test = bind(registry, globals, 'guestfb_test', 1);
    test.setDispatcher((opcode, args) => {
      if (opcode === TestEvent.pong) pongs.push(args[0] as number);
    });
    await roundtrip(connection);
    const kinds = failures.map((f) =>
      f === null ? 'ok' : `${(f as Error).name}:${(f as { code?: string }).code}`,
    );
    assert.deepEqual(kinds, [
      'RangeError:ERR_OUT_OF_RANGE',
      'Error:ERR_WAYLAND_VERSION',
      'TypeError:ERR_INVALID_ARG_TYPE',
      'TypeError:ERR_INVALID_ARG_TYPE',
      'RangeError:ERR_OUT_OF_RANGE',
      'TypeError:ERR_INVALID_ARG_TYPE',
      'ok',
    ]);
    assert.deepEqual(pongs, [7]);

    // Client-side checks mirror them.
    assert.throws(() => test.marshal(42, []), RangeError);
    assert.throws(() => test.marshal(TestRequest.late, []), { code: 'ERR_WAYLAND_VERSION' });
    assert.throws(() => test.marshal(TestRequest.ping, []), TypeError);
    assert.throws(() => test.marshal(TestRequest.ping, [2 ** 32]), RangeError);
    assert.throws(() => test.marshal(TestRequest.sendFd, [-1]), RangeError);
    assert.throws(() => test.marshal(TestRequest.spawn, [null]), TypeError);
    connection.display.setDispatcher(() => assert.fail('libwayland keeps wl_display events'));
    assert.throws(() => connection.display.destroy(), TypeError);
    assert.throws(() => registry.marshal(0, [1, 'guestfb_unknown', 1, null]), {
      code: 'ERR_WAYLAND_UNKNOWN_INTERFACE',
    });
    await roundtrip(connection);
    assert.deepEqual(errors, []);
    assert.deepEqual(server.errors, []);
  } finally {
    connection.disconnect();
    server.destroy();
    runtime.remove();
  }
});

test('display.destroy runs destroy listeners, makes wrappers inert and hangs up clients', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-teardown-0', runtime.dir);
  const { connection, failed } = connectWithErrors(server.socket);
  let proxy: NativeProxy | undefined;
  try {
    const { registry, globals } = await listGlobals(connection);
    proxy = bind(registry, globals, 'guestfb_test', 2);
    await roundtrip(connection);
    const client = server.boundClients[0]!;
    assert.equal(client.destroyed, false);
    assert.equal(typeof client.credentials().pid, 'number');
    assert.equal(client.credentials().pid, process.pid);
    const resource = client.getObject(proxy.id)!;
    assert.equal(resource.interfaceName, 'guestfb_test');
    assert.equal(resource.alive, true);
    assert.equal(resource.client, client);
    assert.equal(client.getObject(1), null, 'wl_display resource belongs to libwayland');

    server.destroy();
    assert.equal(server.display.destroyed, true);
    assert.equal(server.destroyedClients, 1);
    assert.equal(client.destroyed, true);
    assert.equal(resource.alive, false);
    resource.postEvent(TestEvent.pong, [1]); // inert: nothing happens
    resource.destroy();
    assert.equal(client.getObject(proxy.id), null);
    assert.throws(() => client.createResource('guestfb_test', 1, 5, () => {}), {
      code: 'ERR_WAYLAND_DESTROYED',
    });
    assert.throws(() => server.display.addSocket('again'), { code: 'ERR_WAYLAND_DESTROYED' });

    const info = await failed;
    assert.notEqual(info.errno, 0);
    assert.equal(connection.connected, false);
  } finally {
    connection.disconnect();
    server.destroy();
    runtime.remove();
  }
  assert.equal(proxy?.alive, false);
});

test('postNoMemory, postImplementationError and resource.postError reach the client', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-post-0', runtime.dir);
  const serial = server.display.nextSerial();
  assert.equal(server.display.nextSerial(), (serial + 1) >>> 0);
  const cases: [
    string,
    (client: NativeClient, resource: NativeResource) => void,
    number,
    number,
  ][] = [
    ['no memory', (client) => client.postNoMemory(), os.constants.errno.ENOMEM, 2],
    ['implementation', (client) => client.postImplementationError('broken on purpose'), EPROTO, 3],
    [
      'resource error',
      (_client, resource) => resource.postError(7, 'bad request on purpose'),
      EPROTO,
      7,
    ],
  ];
  try {
    for (const [what, post, errno, code] of cases) {
      const { connection, failed } = connectWithErrors(server.socket);
      const { registry, globals } = await listGlobals(connection);
      const proxy = bind(registry, globals, 'guestfb_test', 2);
      await roundtrip(connection);
      const client = server.boundClients.at(-1)!;
      post(client, client.getObject(proxy.id)!);
      const info = await failed;
      assert.equal(info.errno, errno, what);
      assert.equal(info.code, code, what);
      if (code === 7) {
        assert.equal(info.interfaceName, 'guestfb_test');
        assert.equal(info.objectId, proxy.id);
        assert.match(info.message ?? '', /bad request on purpose/);
      }
      connection.disconnect();
    }
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});

test('connect failures are ErrnoErrors; destroy is idempotent', () => {
  const runtime = useTempRuntimeDir();
  try {
    assert.throws(() => native.connect('guestfb-nobody-listens'), {
      code: 'ENOENT',
      syscall: 'wl_display_connect',
    });
    const display = native.createServerDisplay();
    display.destroy();
    display.destroy();
    assert.equal(display.destroyed, true);
  } finally {
    runtime.remove();
  }
});

test('a protocol error still arrives when the server hangs up on unread requests', async () => {
  // The server stops reading at the failing request and closes the socket with our later
  // requests unread: the kernel resets the connection (POLLERR here), but the error event
  // is already queued on our side and must be reported with its code.
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-reset-0', runtime.dir);
  try {
    const { connection, failed } = connectWithErrors(server.socket);
    const { registry, globals } = await listGlobals(connection);
    const test = bind(registry, globals, 'guestfb_test', 2);
    test.marshal(TestRequest.fail, []);
    for (let i = 0; i < 4000; i++) test.marshal(TestRequest.ping, [i]);
    connection.flush();
    const info = await failed;
    assert.equal(info.code, WL_DISPLAY_ERROR_IMPLEMENTATION);
    assert.equal(info.errno, EPROTO);
    connection.disconnect();
  } finally {
    server.destroy();
    runtime.remove();
  }
});
