// Lifetimes: clients over socketpairs (createClient + connectToFd), fds taken on failure,
// deferred destruction from inside callbacks, and env teardown (process.exit, worker threads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { native, type NativeClient, type ProtocolErrorInfo } from '../../native/index.js';
import { fd } from '../../native/fd.js';
import {
  TestEvent,
  TestRequest,
  TestServer,
  bind,
  countFds,
  coreProtocolSpecs,
  listGlobals,
  run,
  testProtocolSpecs,
  useTempRuntimeDir,
} from './native-helpers.js';

native.defineInterfaces([...coreProtocolSpecs(), ...testProtocolSpecs]);

test('socketpair clients (createClient + connectToFd) leave no fds behind', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-pair-0', runtime.dir);
  try {
    const warm = fd.socketpair();
    server.display.createClient(warm[0]).destroy();
    native.connectToFd(warm[1]).disconnect();
    await nextTurn();
    const baseline = countFds();
    for (let i = 0; i < 200; i++) {
      const [serverEnd, clientEnd] = fd.socketpair();
      const client = server.display.createClient(serverEnd);
      assert.equal(client.credentials().pid, process.pid);
      const connection = native.connectToFd(clientEnd);
      const { registry, globals } = await listGlobals(connection);
      const proxy = bind(registry, globals, 'guestfb_test', 2);
      const pong = new Promise<number>((resolve) =>
        proxy.setDispatcher((opcode, args) => {
          if (opcode === TestEvent.pong) resolve(args[0] as number);
        }),
      );
      proxy.marshal(TestRequest.ping, [i]);
      assert.equal(await pong, i);
      // Alternate which side ends the connection.
      if (i % 2 === 0) {
        connection.disconnect();
        client.destroy();
      } else {
        client.destroy();
        assert.equal(client.destroyed, true);
        await new Promise<void>((resolve) => connection.onError(() => resolve()));
        connection.disconnect();
      }
    }
    await nextTurn();
    assert.equal(countFds(), baseline);

    // createClient takes the fd even when it fails.
    const notASocket = openSync(fileURLToPath(import.meta.url), 'r');
    assert.throws(() => server.display.createClient(notASocket), { code: 'ENOTSOCK' });
    assert.equal(countFds(), baseline);
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});

test('destroying the client or the display from inside a request handler is deferred safely', async () => {
  const runtime = useTempRuntimeDir();
  const server = new TestServer('guestfb-defer-0', runtime.dir);
  const killer = server.display.createGlobal('guestfb_ignored', 1, (client: NativeClient) => {
    client.destroy(); // inside libwayland's dispatch of wl_registry.bind
    assert.equal(client.destroyed, false, 'takes effect after the dispatch returns');
  });
  try {
    const connection = native.connect(server.socket);
    const failed = new Promise<void>((resolve) => connection.onError(() => resolve()));
    const { registry, globals } = await listGlobals(connection);
    const target = globals.filter((g) => g.interfaceName === 'guestfb_ignored').at(-1)!;
    registry.marshal(0, [target.name, 'guestfb_ignored', 1, null]);
    await failed;
    connection.disconnect();
    killer.remove();
    killer.destroy();

    // A bind handler that destroys the whole display while libwayland is dispatching.
    let destroyListenerRan = false;
    server.display.createGlobal('guestfb_narrow', 1, (client: NativeClient) => {
      client.onDestroy(() => (destroyListenerRan = true));
      server.display.destroy();
      assert.equal(server.display.destroyed, true);
      assert.equal(destroyListenerRan, false, 'teardown waits for the dispatch to return');
    });
    const second = native.connect(server.socket);
    const hungUp = new Promise<void>((resolve) => second.onError(() => resolve()));
    const listed = await listGlobals(second);
    assert.equal(
      listed.globals.filter((g) => g.interfaceName === 'guestfb_ignored').length,
      1,
      'the destroyed global is gone',
    );
    bind(listed.registry, listed.globals, 'guestfb_narrow', 1);
    await hungUp;
    assert.equal(destroyListenerRan, true);
    second.disconnect();
    assert.deepEqual(server.errors, []);
  } finally {
    server.destroy();
    runtime.remove();
  }
});

test('handlers that destroy their own object and then throw are reported safely', async () => {
  const runtime = useTempRuntimeDir();
  const display = native.createServerDisplay();
  const reported: string[] = [];
  display.onError((error) => reported.push(String(error)));
  const socket = display.addSocket('guestfb-selfdestroy-0');
  display.createGlobal('guestfb_test', 2, (client, version, id) => {
    const resource = client.createResource('guestfb_test', version, id, (opcode) => {
      if (opcode !== TestRequest.destroy) return;
      resource.destroy();
      throw new Error('thrown after destroying the resource');
    });
  });
  const global = display.createGlobal('guestfb_ignored', 1, () => {
    global.destroy();
    throw new Error('thrown after destroying the global');
  });
  try {
    for (const target of ['guestfb_test', 'guestfb_ignored']) {
      const connection = native.connect(socket);
      const failed = new Promise<ProtocolErrorInfo>((resolve) => connection.onError(resolve));
      const { registry, globals } = await listGlobals(connection);
      const proxy = bind(registry, globals, target, 1);
      if (target === 'guestfb_test')
        proxy.marshal(TestRequest.destroy, [], undefined, undefined, true);
      const info = await failed;
      assert.equal(info.code, 3, target);
      connection.disconnect();
    }
    assert.equal(reported.length, 2);
    assert.match(reported[0]!, /after destroying the resource/);
    assert.match(reported[1]!, /after destroying the global/);
  } finally {
    display.destroy();
    runtime.remove();
  }
});

const indexUrl = new URL('../../native/index.js', import.meta.url).href;
const addonPath = fileURLToPath(new URL('../../../build/Release/guestfb.node', import.meta.url));

test('process.exit and worker termination tear down live displays and connections', async () => {
  const runtime = useTempRuntimeDir();
  try {
    // The worker loads the addon a second time (its own env) and is terminated while its display
    // and connection are live; then the main thread exits with its own live display.
    const workerCode = [
      `import { createRequire } from 'node:module';`,
      `import { parentPort } from 'node:worker_threads';`,
      `const native = createRequire(${JSON.stringify(addonPath)})(${JSON.stringify(addonPath)});`,
      `const display = native.createServerDisplay();`,
      `const connection = native.connect(display.addSocket('guestfb-exit-worker'));`,
      `parentPort.postMessage(connection.connected);`,
    ].join('\n');
    const script = [
      `import { native } from ${JSON.stringify(indexUrl)};`,
      `import { Worker } from 'node:worker_threads';`,
      `const display = native.createServerDisplay();`,
      `const connection = native.connect(display.addSocket('guestfb-exit-0'));`,
      `connection.display.marshal(0, [null], 'wl_callback');`,
      `const worker = new Worker(${JSON.stringify(workerCode)}, { eval: true });`,
      `worker.once('message', async (connected) => {`,
      `  await worker.terminate();`,
      `  console.log('worker connected', connected);`,
      `  process.exit(0);`,
      `});`,
    ].join('\n');
    const child = run(process.execPath, ['--input-type=module', '-e', script], {
      ...process.env,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    const result = await child.done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /worker connected true/);
  } finally {
    runtime.remove();
  }
});
