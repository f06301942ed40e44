// Who may connect to the sockets guestfb listens on for QEMU (vhost-user GPU and input, ivshmem):
// the modes are measured on the files, a live socket is never taken over, and a second
// front-end or ivshmem client is refused while the first goes on. Real AF_UNIX sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd, type FdAddon } from '../../native/fd.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import { createVhostUserInputBackend } from '../../plugin/virtio-input/index.js';
import { IvshmemServer } from '../../plugin/sources/shared-bar/server.js';
import {
  parseSocketMode,
  resolveSocketAccess,
  type SocketAccess,
} from '../../plugin/common/unix-socket.js';
import { Request } from '../../plugin/vhost-user/vhost-user-protocol.js';
import { until } from '../helpers/wait.js';
import { VhostSocket } from '../helpers/vhost-frontend.js';

const isRoot = process.getuid?.() === 0;

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guestfb-sockets-'));
  fs.chmodSync(dir, 0o711); // other users may reach the sockets; their modes decide
  return dir;
}

function modeOf(file: string): number {
  return fs.statSync(file).mode & 0o7777;
}

/** What `connect()` gives another user (uid/gid 65534) on `socket`: "connected" or an errno. */
function connectAsNobody(socket: string): string {
  const script =
    "const s = require('net').connect(process.argv[1]);" +
    "s.on('connect', () => { console.log('connected'); s.destroy(); });" +
    "s.on('error', (e) => console.log(e.code));";
  const result = spawnSync(process.execPath, ['-e', script, socket], {
    uid: 65534,
    gid: 65534,
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim();
}

/** The fd module with the socket file's mode recorded the moment bind() created it. */
function recordingBindModes(modes: string[]): FdAddon {
  return new Proxy(fd, {
    get(target, key) {
      if (key !== 'unixListen') return Reflect.get(target, key) as unknown;
      return (socket: string, backlog?: number, mode?: number) => {
        const listening = target.unixListen(socket, backlog, mode);
        modes.push(modeOf(socket).toString(8));
        return listening;
      };
    },
  });
}

/** The three kinds of listening socket guestfb makes, each closed by the returned function. */
function openAll(
  dir: string,
  access?: SocketAccess,
  bindModes: string[] = [],
  log: string[] = [],
): () => void {
  const fdModule = recordingBindModes(bindModes);
  const gpu = createVhostUserGpuBackend({
    socketPath: path.join(dir, 'gpu.sock'),
    role: 'listen',
    fdModule,
    socketAccess: access,
    log: (level, message) => log.push(`${level}: ${message}`),
  });
  const input = createVhostUserInputBackend({
    socketPath: path.join(dir, 'input.sock'),
    role: 'listen',
    fdModule,
    socketAccess: access,
    log: (level, message) => log.push(`${level}: ${message}`),
  });
  const shm = fd.memfdCreate('bar', true);
  fd.ftruncate(shm, 8192);
  const ivshmem = new IvshmemServer({
    socketPath: path.join(dir, 'ivshmem.sock'),
    shmFd: shm,
    fdModule,
    socketAccess: access,
    log: (level, message) => log.push(`${level}: ${message}`),
  });
  return () => {
    gpu.close();
    input.close();
    ivshmem.close();
    fd.close(shm);
  };
}

const SOCKETS = ['gpu.sock', 'input.sock', 'ivshmem.sock'];

test('sockets are 0600 by default, whatever the umask: set before bind, never wider', async (t) => {
  const baseline = fd.openFdCount();
  const dir = tempDir();
  const umask = process.umask(0); // a plain bind() would now make them 0777
  const bindModes: string[] = [];
  let close: () => void;
  try {
    close = openAll(dir, undefined, bindModes);
  } finally {
    process.umask(umask);
  }
  try {
    assert.deepEqual(bindModes, ['600', '600', '600'], 'owner-only from bind() on');
    for (const name of SOCKETS) {
      const file = path.join(dir, name);
      assert.ok(fs.lstatSync(file).isSocket(), name);
      assert.equal(modeOf(file).toString(8), '600', name);
      assert.equal(fs.statSync(file).uid, process.getuid?.(), name);
    }
    if (isRoot) {
      assert.equal(connectAsNobody(path.join(dir, 'gpu.sock')), 'EACCES');
      assert.equal(connectAsNobody(path.join(dir, 'ivshmem.sock')), 'EACCES');
    } else {
      t.diagnostic('not root: another user connecting is not tried (the modes were measured)');
    }
  } finally {
    close();
  }
  for (const name of SOCKETS) assert.equal(fs.existsSync(path.join(dir, name)), false, name);
  assert.equal(fd.openFdCount(), baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('socketAccess: the exact mode and group asked for, by name or gid', async (t) => {
  const baseline = fd.openFdCount();
  const dir = tempDir();
  // Root may give any group; others only one of their own.
  const gid = isRoot ? 1 : process.getgid!();
  const groupName = isRoot ? 'daemon' : null;
  if (groupName) assert.equal(fd.groupId(groupName), gid);
  const umask = process.umask(0); // looser than asked: bind() still makes them owner-only
  const bindModes: string[] = [];
  let close: () => void;
  try {
    close = openAll(dir, { mode: 0o660, group: groupName ?? gid }, bindModes);
  } finally {
    process.umask(umask);
  }
  try {
    // The group's bits come only after the file has its group.
    assert.deepEqual(bindModes, ['600', '600', '600']);
    for (const name of SOCKETS) {
      const file = path.join(dir, name);
      assert.equal(modeOf(file).toString(8), '660', name);
      assert.equal(fs.statSync(file).gid, gid, name);
    }
  } finally {
    close();
  }
  const strict = process.umask(0o077); // stricter than asked: the mode still comes out exact
  let wide: () => void;
  try {
    wide = openAll(dir, { mode: 0o666 });
  } finally {
    process.umask(strict);
  }
  try {
    assert.equal(modeOf(path.join(dir, 'gpu.sock')).toString(8), '666');
    if (isRoot) assert.equal(connectAsNobody(path.join(dir, 'gpu.sock')), 'connected');
    else t.diagnostic('not root: another user connecting is not tried');
  } finally {
    wide();
  }
  // A group that does not exist fails before anything is created.
  assert.throws(
    () =>
      createVhostUserGpuBackend({
        socketPath: path.join(dir, 'x.sock'),
        role: 'listen',
        socketAccess: { group: 'no-such-group-guestfb' },
      }),
    /socket group "no-such-group-guestfb" does not exist/,
  );
  assert.equal(fs.existsSync(path.join(dir, 'x.sock')), false);
  assert.throws(() => resolveSocketAccess(fd, { mode: 0o1777 }), /not a permission mode/);
  assert.deepEqual(['600', '0660', '0o640', '0777', '0668', '1777', '', 'x'].map(parseSocketMode), [
    0o600,
    0o660,
    0o640,
    0o777,
    NaN,
    NaN,
    NaN,
    NaN,
  ]);
  assert.equal(fd.openFdCount(), baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a live socket is never taken over, a stale one is replaced, a non-socket is refused', () => {
  const baseline = fd.openFdCount();
  const dir = tempDir();
  const socket = path.join(dir, 'vm.sock');
  const gpuAt = (at: string) =>
    createVhostUserGpuBackend({ socketPath: at, role: 'listen', log: () => {} });
  const shm = fd.memfdCreate('bar', true);
  fd.ftruncate(shm, 8192);
  const ivshmemAt = (at: string) =>
    new IvshmemServer({ socketPath: at, shmFd: shm, log: () => {} });

  // Another process's live socket (here a listener of this test).
  const live = fd.unixListen(socket, 4);
  try {
    for (const start of [gpuAt, ivshmemAt]) {
      assert.throws(() => start(socket), {
        name: 'SocketInUseError',
        message: `${socket} is in use by another process`,
      });
    }
    // Still the live listener's: a connection reaches it.
    const client = fd.unixConnect(socket);
    assert.ok(fd.pollReadable(live, 5000));
    const accepted = fd.unixAccept(live);
    assert.ok(accepted >= 0, 'the live listener still accepts');
    fd.close(accepted);
    fd.close(client);
    // A live listener whose backlog is full answers EAGAIN: still in use (and no hang).
    for (let i = 0; i < 16 && fd.unixProbe(socket) !== 'EAGAIN'; i++);
    assert.equal(fd.unixProbe(socket), 'EAGAIN');
    assert.throws(() => gpuAt(socket), /is in use by another process/);
  } finally {
    fd.close(live);
  }

  // The listener is gone, its file stays: stale, so replaced.
  assert.ok(fs.lstatSync(socket).isSocket());
  assert.equal(fd.unixProbe(socket), 'ECONNREFUSED');
  const gpu = gpuAt(socket);
  assert.equal(fd.unixProbe(socket), 'OK', 'the new socket listens');
  assert.equal(modeOf(socket).toString(8), '600');
  gpu.close();
  assert.equal(fs.existsSync(socket), false, 'closing removes its own file');

  // Not a socket: refused, left as it was.
  const file = path.join(dir, 'notes.txt');
  fs.writeFileSync(file, 'keep me');
  for (const start of [gpuAt, ivshmemAt]) {
    assert.throws(() => start(file), new RegExp(`${file} exists and is not a socket`));
  }
  assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');

  // Closing never removes a socket file that is no longer its own.
  const mine = ivshmemAt(socket);
  fs.unlinkSync(socket);
  const other = fd.unixListen(socket, 1);
  mine.close();
  assert.ok(fs.existsSync(socket), "another process's socket at the path stays");
  fd.close(other);
  fd.close(shm);
  assert.equal(fd.openFdCount(), baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a second vhost-user front-end is refused while a session is live; the session goes on', async () => {
  const baseline = fd.openFdCount();
  const dir = tempDir();
  const socketPath = path.join(dir, 'gpu.sock');
  const logs: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    name: 'guest-a',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const first = new VhostSocket(fd.unixConnect(socketPath));
  const second = new VhostSocket(fd.unixConnect(socketPath));
  try {
    assert.equal((await first.call(Request.GET_FEATURES)).length, 8, 'GET_FEATURES answered');
    await second.closedByPeer(); // the second front-end sees end of stream
    const refusals = logs.filter((line) => line.includes('second front-end'));
    assert.equal(refusals.length, 1);
    assert.match(
      refusals[0]!,
      new RegExp(
        `^warn: refused a second front-end \\(pid ${process.pid}, uid \\d+\\) on ${socketPath}: ` +
          'guest guest-a has a live session',
      ),
    );
    // The live session is unaffected: it still answers, and it is still the connected one.
    assert.equal((await first.call(Request.GET_FEATURES)).length, 8, 'GET_FEATURES answered');
    assert.equal(backend.connected, true);
    assert.equal(backend.stats().disconnects, 0);
  } finally {
    second.close();
    first.close();
  }
  // Once the first front-end is gone, the next one is served.
  await until(() => !backend.connected, 'the first session to end', { intervalMs: 2 });
  const third = new VhostSocket(fd.unixConnect(socketPath));
  try {
    assert.equal((await third.call(Request.GET_FEATURES)).length, 8, 'GET_FEATURES answered');
  } finally {
    third.close();
  }
  await until(() => !backend.connected, 'the third session to end', { intervalMs: 2 });
  backend.close();
  assert.equal(fd.openFdCount(), baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});
