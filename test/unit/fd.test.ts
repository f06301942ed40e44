// The fd module on the host: memfds and seals, mmap, eventfd, AF_UNIX with SCM_RIGHTS, watches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fd, Seal, pageSize, waitReadable } from '../../native/fd.js';
import { isSystemError } from '../../native/index.js';

const baseline = fd.openFdCount();

test.after(() => {
  assert.equal(fd.openFdCount(), baseline, 'every fd the tests opened was closed');
});

function withMemfd<T>(size: number, body: (memfd: number) => T): T {
  const memfd = fd.memfdCreate('guestfb-test', true);
  try {
    fd.ftruncate(memfd, size);
    return body(memfd);
  } finally {
    fd.close(memfd);
  }
}

function assertErrno(action: () => unknown, code: string, syscall: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(isSystemError(error), `expected a system error, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.syscall, syscall);
    assert.equal(typeof error.errno, 'number');
    return true;
  });
}

test('page size is a power of two of at least 4096', () => {
  assert.ok(pageSize >= 4096);
  assert.equal(pageSize & (pageSize - 1), 0);
});

test('openFdCount counts a new fd and its close', () => {
  const before = fd.openFdCount();
  const memfd = fd.memfdCreate('count');
  assert.equal(fd.openFdCount(), before + 1);
  fd.close(memfd);
  assert.equal(fd.openFdCount(), before);
});

test('memfd seals: SHRINK forbids shrinking, WRITE forbids writing', () => {
  withMemfd(2 * pageSize, (memfd) => {
    assert.equal(fd.getSeals(memfd), 0);
    assert.equal(fd.fdSize(memfd), 2 * pageSize);
    fd.addSeals(memfd, Seal.SHRINK);
    assert.equal(fd.getSeals(memfd), Seal.SHRINK);
    assertErrno(() => fd.ftruncate(memfd, pageSize), 'EPERM', 'ftruncate');
    fd.ftruncate(memfd, 3 * pageSize); // growing is still allowed
    assert.equal(fd.fdSize(memfd), 3 * pageSize);
    assert.equal(fd.pwrite(memfd, new Uint8Array([1, 2, 3]), 10), 3);
    fd.addSeals(memfd, Seal.WRITE | Seal.SEAL);
    assert.equal(fd.getSeals(memfd), Seal.SHRINK | Seal.WRITE | Seal.SEAL);
    assertErrno(() => fd.pwrite(memfd, new Uint8Array([9]), 0), 'EPERM', 'pwrite');
    assertErrno(() => fd.addSeals(memfd, Seal.GROW), 'EPERM', 'fcntl');
    const back = new Uint8Array(3);
    assert.equal(fd.pread(memfd, back, 10), 3);
    assert.deepEqual([...back], [1, 2, 3]);
  });
});

test('a memfd made without sealing refuses seals', () => {
  const memfd = fd.memfdCreate('unsealable', false);
  try {
    assert.equal(fd.getSeals(memfd), Seal.SEAL);
    assertErrno(() => fd.addSeals(memfd, Seal.SHRINK), 'EPERM', 'fcntl');
  } finally {
    fd.close(memfd);
  }
});

test('bad arguments are type and range errors, bad fds are EBADF', () => {
  assert.throws(() => fd.ftruncate(-1, 0), RangeError);
  assert.throws(() => fd.ftruncate(1.5, 0), RangeError);
  assert.throws(() => fd.pread(0, new Uint8Array(1), -1), RangeError);
  assert.throws(() => fd.pread(0, new Uint8Array(1), 2 ** 53), RangeError);
  assert.throws(() => fd.pread(0, new Uint16Array(1) as unknown as Uint8Array, 0), TypeError);
  assert.throws(() => fd.mmap(0, 0, 0), RangeError);
  assertErrno(() => fd.fdSize(1_000_000), 'EBADF', 'lseek');
  assertErrno(() => fd.close(1_000_000), 'EBADF', 'close');
  assertErrno(() => fd.udmabufOpen('/nonexistent-guestfb-device'), 'ENOENT', 'open');
});

test('dup returns an independent fd to the same file', () => {
  withMemfd(pageSize, (memfd) => {
    const copy = fd.dup(memfd);
    try {
      assert.notEqual(copy, memfd);
      fd.pwrite(copy, new Uint8Array([42]), 7);
      const byte = new Uint8Array(1);
      fd.pread(memfd, byte, 7);
      assert.equal(byte[0], 42);
    } finally {
      fd.close(copy);
    }
  });
});

test('mmap: writes through the mapping are read by pread and the other way round', () => {
  withMemfd(4 * pageSize, (memfd) => {
    const mapping = fd.mmap(memfd, pageSize, 2 * pageSize, true);
    try {
      assert.equal(mapping.byteLength, 2 * pageSize);
      const view = new Uint8Array(mapping);
      for (let i = 0; i < view.length; i++) view[i] = (i * 7) & 0xff;
      const back = new Uint8Array(2 * pageSize);
      assert.equal(fd.pread(memfd, back, pageSize), back.length);
      assert.deepEqual(back, view);
      fd.pwrite(memfd, new Uint8Array([0xde, 0xad]), pageSize + 100);
      assert.equal(view[100], 0xde);
      assert.equal(view[101], 0xad);
    } finally {
      fd.munmap(mapping);
    }
  });
});

test('mmap stays valid after the fd is closed; a read-only mapping is read-only', () => {
  const memfd = fd.memfdCreate('closed-after-map');
  fd.ftruncate(memfd, pageSize);
  fd.pwrite(memfd, new Uint8Array([5, 6, 7]), 0);
  const readOnly = fd.mmap(memfd, 0, pageSize);
  fd.close(memfd);
  try {
    assert.deepEqual([...new Uint8Array(readOnly, 0, 3)], [5, 6, 7]);
  } finally {
    fd.munmap(readOnly);
  }
});

test('munmap detaches the ArrayBuffer, is idempotent and only takes mmap buffers', () => {
  withMemfd(pageSize, (memfd) => {
    const mapping = fd.mmap(memfd, 0, pageSize, true);
    const view = new Uint8Array(mapping);
    fd.munmap(mapping);
    assert.equal(mapping.byteLength, 0);
    assert.equal(view.length, 0);
    assert.equal(view[0], undefined); // no access to the unmapped page
    fd.munmap(mapping);
    assert.throws(() => fd.munmap(new ArrayBuffer(8)), TypeError);
    assert.throws(() => fd.munmap(new Uint8Array(8) as unknown as ArrayBuffer), TypeError);
  });
  assertErrno(() => fd.mmap(1_000_000, 0, pageSize), 'EBADF', 'mmap');
  withMemfd(pageSize, (memfd) => {
    assertErrno(() => fd.mmap(memfd, 100, pageSize), 'EINVAL', 'mmap');
  });
});

function mappingsNamed(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(`memfd:${name}`)).length;
}

test('an unreachable mapping that was never unmapped is unmapped by its finalizer', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const name = 'guestfb-finalizer-probe';
  withMemfd(pageSize, () => undefined);
  const memfd = fd.memfdCreate(name);
  fd.ftruncate(memfd, pageSize);
  (() => {
    for (let i = 0; i < 4; i++) new Uint8Array(fd.mmap(memfd, 0, pageSize, true))[0] = i;
  })();
  fd.close(memfd);
  assert.equal(mappingsNamed(name), 4);
  // Finalizers run from a later loop turn after the collection.
  for (let round = 0; round < 20 && mappingsNamed(name) > 0; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(mappingsNamed(name), 0);
});

test('a munmapped buffer that is collected later is not unmapped twice', async () => {
  const gc = runInNewContext('gc') as () => void;
  withMemfd(pageSize, (memfd) => {
    fd.munmap(fd.mmap(memfd, 0, pageSize, true));
  });
  // Map something new that likely reuses the address, then let the old finalizer run.
  const name = 'guestfb-reuse-probe';
  const memfd = fd.memfdCreate(name);
  fd.ftruncate(memfd, pageSize);
  const survivor = fd.mmap(memfd, 0, pageSize, true);
  fd.close(memfd);
  for (let round = 0; round < 5; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(mappingsNamed(name), 1);
  new Uint8Array(survivor)[0] = 1; // still mapped: this would fault otherwise
  fd.munmap(survivor);
  assert.equal(mappingsNamed(name), 0);
});

test('eventfd counts writes and resets on read', () => {
  const event = fd.eventfd(0);
  try {
    assert.equal(fd.eventfdRead(event), 0);
    fd.eventfdWrite(event);
    fd.eventfdWrite(event, 2);
    assert.equal(fd.eventfdRead(event), 3);
    assert.equal(fd.eventfdRead(event), 0);
    const seeded = fd.eventfd(5);
    assert.equal(fd.eventfdRead(seeded), 5);
    fd.close(seeded);
  } finally {
    fd.close(event);
  }
});

test('socketpair passes a memfd with SCM_RIGHTS; the receiver reads its content', () => {
  const [left, right] = fd.socketpair();
  const memfd = fd.memfdCreate('passed');
  try {
    fd.ftruncate(memfd, pageSize);
    fd.pwrite(memfd, new TextEncoder().encode('through the socket'), 0);
    assert.equal(fd.unixSend(left, new Uint8Array([1, 2, 3, 4]), [memfd]), 4);
    const message = fd.unixRecv(right, 64);
    assert.ok(message);
    assert.deepEqual([...message.data], [1, 2, 3, 4]);
    assert.equal(message.fdsTruncated, false);
    assert.equal(message.fds.length, 1);
    const received = message.fds[0]!;
    assert.notEqual(received, memfd);
    const text = new Uint8Array(18);
    fd.pread(received, text, 0);
    assert.equal(new TextDecoder().decode(text), 'through the socket');
    fd.close(received);
    assert.equal(fd.unixRecv(right, 64), null, 'nothing more: EAGAIN is null');
    fd.close(left);
    const end = fd.unixRecv(right, 64);
    assert.ok(end);
    assert.equal(end.data.length, 0, 'end of stream');
  } finally {
    fd.close(right);
    fd.close(memfd);
  }
});

test('a message with more fds than the receiver takes closes all of them', () => {
  const before = fd.openFdCount();
  const [left, right] = fd.socketpair();
  const memfd = fd.memfdCreate('many');
  try {
    assert.throws(() => fd.unixSend(left, new Uint8Array(0), [memfd]), RangeError);
    fd.unixSend(left, new Uint8Array([7]), new Array<number>(40).fill(memfd));
    const message = fd.unixRecv(right, 16);
    assert.ok(message);
    assert.deepEqual([...message.data], [7]);
    assert.equal(message.fdsTruncated, true);
    assert.deepEqual(message.fds, []);
  } finally {
    fd.close(left);
    fd.close(right);
    fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), before);
});

test('a full socket buffer is EAGAIN; partial sends report their byte count', () => {
  const [left, right] = fd.socketpair();
  try {
    const chunk = new Uint8Array(64 * 1024);
    let total = 0;
    let sends = 0;
    // The kernel buffer is finite: sending without reading ends in EAGAIN.
    assert.throws(
      () => {
        for (;;) {
          const sent = fd.unixSend(left, chunk);
          assert.ok(sent > 0 && sent <= chunk.length);
          total += sent;
          sends++;
        }
      },
      (error: unknown) =>
        isSystemError(error) && error.code === 'EAGAIN' && error.syscall === 'sendmsg',
    );
    assert.ok(sends > 0);
    let received = 0;
    for (
      let message = fd.unixRecv(right, 1 << 20);
      message;
      message = fd.unixRecv(right, 1 << 20)
    ) {
      received += message.data.length;
    }
    assert.equal(received, total, 'every byte that was reported sent arrived');
  } finally {
    fd.close(left);
    fd.close(right);
  }
});

test('unixListen, unixConnect and unixAccept connect a stream', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'guestfb-fd-'));
  const socketPath = path.join(dir, 'socket');
  const listener = fd.unixListen(socketPath);
  try {
    assert.equal(fd.unixAccept(listener), -1, 'nothing pending');
    assertErrno(() => fd.unixListen(socketPath), 'EADDRINUSE', 'bind');
    const client = fd.unixConnect(socketPath);
    await waitReadable(listener, 10_000);
    const server = fd.unixAccept(listener);
    assert.ok(server >= 0);
    fd.unixSend(client, new Uint8Array([9, 8]));
    await waitReadable(server, 10_000);
    assert.deepEqual([...fd.unixRecv(server, 8)!.data], [9, 8]);
    fd.close(client);
    fd.close(server);
  } finally {
    fd.close(listener);
    rmSync(dir, { recursive: true });
  }
  assertErrno(() => fd.unixConnect(socketPath), 'ENOENT', 'connect');
  assert.throws(() => fd.unixConnect('x'.repeat(200)), RangeError);
});

test('watchReadable fires while readable, stops when told, stop is idempotent', async () => {
  const event = fd.eventfd(0);
  try {
    let calls = 0;
    let release: () => void = () => undefined;
    const fired = new Promise<void>((resolve) => (release = resolve));
    const stop = fd.watchReadable(event, (error) => {
      assert.equal(error, undefined);
      calls++;
      assert.equal(fd.eventfdRead(event), 1);
      release();
    });
    assert.equal(calls, 0);
    assertErrno(() => fd.watchReadable(event, () => undefined), 'EEXIST', 'uv_poll_init');
    fd.eventfdWrite(event);
    await fired;
    assert.equal(calls, 1);
    stop();
    stop();
    fd.eventfdWrite(event);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 1, 'no calls after stop');
    assert.equal(fd.pollReadable(event, 0), true);
    assert.equal(fd.eventfdRead(event), 1);
    assert.equal(fd.pollReadable(event, 0), false);
  } finally {
    fd.close(event);
  }
});

test('a watch callback may stop its own watch', async () => {
  const event = fd.eventfd(1);
  try {
    let calls = 0;
    await new Promise<void>((resolve) => {
      const stop = fd.watchReadable(event, () => {
        calls++;
        stop();
        setImmediate(resolve);
      });
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 1, 'level triggered, but stopped inside the first call');
  } finally {
    fd.close(event);
  }
});

test('promise jobs queued in a watch callback run before the next loop phase', async () => {
  const event = fd.eventfd(1);
  try {
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      const stop = fd.watchReadable(event, () => {
        stop();
        void Promise.resolve().then(() => order.push('microtask'));
        setImmediate(() => {
          order.push('immediate');
          resolve();
        });
      });
    });
    assert.deepEqual(order, ['microtask', 'immediate']);
  } finally {
    fd.close(event);
  }
});
