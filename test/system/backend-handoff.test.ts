// The handoff of a vhost-user socket from the back-end program libvirt starts to the running
// guestfb: real AF_UNIX sockets and SCM_RIGHTS between this process and the server, and a peer
// of another uid run as its own process (setpriv), refused by SO_PEERCRED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import {
  encodeMessage,
  handOff,
  HandoffServer,
  MessageReader,
  type HandedDomain,
} from '../../plugin/backend-program/handoff.js';

/** A private runtime folder with a handoff server; the test body gets what was accepted. */
async function withServer(
  accept: (domain: HandedDomain, end: () => void) => string | null,
  body: (server: HandoffServer, socketPath: string, logs: string[]) => Promise<void>,
  options: { maxDomains?: number; handshakeTimeoutMs?: number } = {},
) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-handoff-'));
  const socketPath = path.join(dir, 'guestfb', 'control.sock');
  const logs: string[] = [];
  const server = new HandoffServer({
    path: socketPath,
    accept,
    log: (m) => logs.push(m),
    ...options,
  });
  try {
    await body(server, socketPath, logs);
  } finally {
    server.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('handoff: the vhost-user socket reaches the server, which ends the helper with the session', async () => {
  const baseline = fd.openFdCount();
  let ending: (() => void) | null = null;
  const taken: HandedDomain[] = [];
  await withServer(
    (domain, end) => {
      taken.push(domain);
      ending = end;
      return null;
    },
    async (server, socketPath) => {
      const [ours, qemuSide] = fd.socketpair();
      const result = await handOff(socketPath, { type: 'gpu', name: 'my vm' }, ours);
      fd.close(ours);
      assert.equal(result.pid, process.pid);
      assert.equal(taken.length, 1);
      assert.deepEqual(
        { type: taken[0]!.type, name: taken[0]!.name, uid: taken[0]!.peer.uid },
        { type: 'gpu', name: 'my vm', uid: process.getuid!() },
      );
      assert.equal(server.domains, 1);
      // The handed fd is the same connection: bytes written by "QEMU" arrive on it.
      fd.unixSend(qemuSide, new Uint8Array([42]));
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual([...fd.unixRecv(taken[0]!.fd, 4)!.data], [42]);
      fd.close(taken[0]!.fd);
      fd.close(qemuSide);
      ending!();
      await result.ended;
      assert.equal(server.domains, 0);
      assert.equal(server.counters.accepted, 1);
    },
  );
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('handoff: refusal, garbage, a missing fd and a silent helper each fail cleanly without leaks', async () => {
  const baseline = fd.openFdCount();
  await withServer(
    () => 'guestfb is not connected to a compositor',
    async (server, socketPath) => {
      const [ours, other] = fd.socketpair();
      await assert.rejects(
        handOff(socketPath, { type: 'gpu', name: 'vm' }, ours),
        /guestfb refused: guestfb is not connected to a compositor/,
      );
      fd.close(ours);
      fd.close(other);

      // A length over the limit, then no fd at all.
      for (const [frame, why] of [
        [Buffer.from([0xff, 0xff, 0, 0, 1]), /message of 65535 bytes/],
        [encodeMessage({ version: 1, type: 'gpu', name: 'vm' }), /no vhost-user socket attached/],
      ] as const) {
        const conn = fd.unixConnect(socketPath);
        fd.unixSend(conn, frame);
        await new Promise((resolve) => setTimeout(resolve, 50));
        const reply = new MessageReader().push(fd.unixRecv(conn, 4096)!.data) as { error: string };
        assert.match(reply.error, why);
        fd.close(conn);
      }
      assert.equal(server.counters.refused, 1);
      assert.equal(server.counters.failedHandshakes, 2);
    },
  );
  await withServer(
    () => null,
    async (server, socketPath, logs) => {
      const conn = fd.unixConnect(socketPath);
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.match(logs.join('\n'), /handshake timed out/);
      assert.deepEqual(fd.unixRecv(conn, 4096)!.data.length > 0, true, 'told why');
      fd.close(conn);
      assert.equal(server.domains, 0);
    },
    { handshakeTimeoutMs: 50 },
  );
  await withServer(
    () => null,
    async (_server, socketPath) => {
      const [a, aPeer] = fd.socketpair();
      const first = await handOff(socketPath, { type: 'gpu', name: 'one' }, a);
      await assert.rejects(
        handOff(socketPath, { type: 'gpu', name: 'two' }, a),
        /already shows 1 domains/,
      );
      first.close();
      fd.close(a);
      fd.close(aPeer);
    },
    { maxDomains: 1 },
  );
  // The accepted fds were handed to `accept` (which kept them); count those out.
  assert.ok(fd.openFdCount() <= baseline + 1, `fds: ${fd.openFdCount()} vs ${baseline}`);
});

test('handoff server: a folder others can enter is refused; a live socket is not taken over', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-handoff-'));
  try {
    const open = path.join(dir, 'open');
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o755);
    assert.throws(
      () => new HandoffServer({ path: path.join(open, 'control.sock'), accept: () => null }),
      /open to others \(mode 755; want 700\)/,
    );
    const socketPath = path.join(dir, 'guestfb', 'control.sock');
    const first = new HandoffServer({ path: socketPath, accept: () => null, log: () => undefined });
    try {
      assert.throws(
        () => new HandoffServer({ path: socketPath, accept: () => null }),
        /another guestfb already accepts VMs/,
      );
    } finally {
      first.shutdown();
    }
    // A stale socket (its guestfb killed) is replaced.
    const stale = fd.unixListen(socketPath, 1);
    fd.close(stale);
    const second = new HandoffServer({
      path: socketPath,
      accept: () => null,
      log: () => undefined,
    });
    second.shutdown();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('handoff server: a peer of another uid is refused by SO_PEERCRED even when it reaches the socket', async () => {
  await withServer(
    () => assert.fail('must not accept'),
    async (server, socketPath, logs) => {
      assert.equal(process.getuid?.(), 0, 'this test runs a client as uid 65534: run it as root');
      // Open the way on purpose (guestfb never does): only the uid check remains.
      chmodSync(path.dirname(path.dirname(socketPath)), 0o711);
      chmodSync(path.dirname(socketPath), 0o711);
      chmodSync(socketPath, 0o666);
      const script =
        "const s=require('net').connect(process.argv[1]);" +
        "s.on('connect',()=>s.write(Buffer.from([1,0,0,0,123])));" +
        "s.on('close',()=>{console.log('closed');});s.on('error',(e)=>console.log(e.code));";
      const child = spawn(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          '-e',
          script,
          socketPath,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      assert.equal(status, 0, output);
      // It reached the socket (no EACCES) and guestfb hung up on it (a reset or broken pipe when its bytes were
      // still unread).
      assert.match(output.trim(), /^((ECONNRESET|EPIPE)\n)?closed$/, 'guestfb hung up on it');
      assert.equal(server.counters.rejectedPeers, 1);
      assert.match(logs.join('\n'), /refused pid \d+ of uid 65534 \(only uid 0 and root\)/);
      assert.equal(server.domains, 0);
    },
  );
});
