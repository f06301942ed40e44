// QEMU's memory regions are checked against fstat before anything is mapped: a region past the
// end of its memfd (mmap would map it and touching the tail is SIGBUS), a non-file fd, or an
// offset that wraps is refused; a SET_MEM_TABLE with one bad region changes nothing, closes every
// fd it brought, leaves none of it mapped, and is answered as failed (REPLY_ACK). Real sockets,
// real memfds; the process fd count and /proc/self/maps are measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import {
  encodeMemTable,
  parseU64,
  ProtocolFeature,
  Request,
  u64Payload,
  type WireMemoryRegion,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import { until } from '../helpers/wait.js';
import { VhostSocket } from '../helpers/vhost-frontend.js';

const MiB = 1024 * 1024;

/** Mappings of this process whose file is a memfd named `name`. */
function mappingsOf(name: string): number {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(`/memfd:${name} `)).length;
}

function memfd(name: string, size: number): number {
  const x = fd.memfdCreate(name, true);
  fd.ftruncate(x, size);
  return x;
}

const region = (
  guestAddr: number,
  size: number,
  mmapOffset: number | bigint,
): WireMemoryRegion => ({
  guestAddr: BigInt(guestAddr),
  size: BigInt(size),
  userAddr: 0x7f00_0000_0000n + BigInt(guestAddr),
  mmapOffset: BigInt(mmapOffset),
});

test('SET_MEM_TABLE: regions checked against fstat; a bad table changes nothing, leaks nothing', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guestfb-regions-'));
  const socketPath = path.join(dir, 'gpu.sock');
  const logs: string[] = [];
  const baseline = fd.openFdCount();
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    name: 'regions',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const withBackend = fd.openFdCount();
  const front = new VhostSocket(fd.unixConnect(socketPath));
  const call = async (request: number, payload?: Uint8Array, fds: number[] = []) =>
    parseU64(await front.call(request, payload, fds));
  try {
    assert.equal(
      await call(Request.SET_PROTOCOL_FEATURES, u64Payload(ProtocolFeature.REPLY_ACK)),
      0n,
    );
    await until(() => backend.connected, 'the session');
    const connected = fd.openFdCount();

    // A good table: its fd is kept, the region mapped.
    const good = memfd('guestfb-good-ram', 2 * MiB);
    assert.equal(
      await call(Request.SET_MEM_TABLE, encodeMemTable([region(0, 2 * MiB, 0)]), [good]),
      0n,
    );
    fd.close(good);
    assert.equal(fd.openFdCount(), connected + 1, 'the good region fd is held');
    assert.equal(mappingsOf('guestfb-good-ram'), 1);

    const cases: [string, WireMemoryRegion[], () => number[], RegExp][] = [
      [
        'a region longer than its memfd',
        [region(4 * MiB, 2 * MiB, 0), region(0, 2 * MiB, 0)],
        () => [memfd('guestfb-bad-ram', 2 * MiB), memfd('guestfb-bad-ram', 1 * MiB)],
        /ends past the fd's 1048576 bytes/,
      ],
      [
        'an offset that puts the region past the end',
        [region(0, 2 * MiB, 4096)],
        () => [memfd('guestfb-bad-ram', 2 * MiB)],
        /memory region \[4096, \+2097152\) of its fd ends past the fd's 2097152 bytes/,
      ],
      [
        'an offset near 2^53 (no wrap)',
        [region(0, 4096, 2n ** 53n - 4096n)],
        () => [memfd('guestfb-bad-ram', 8192)],
        /ends past|wraps|53 bits/,
      ],
      ['an eventfd as memory', [region(0, 4096, 0)], () => [fd.eventfd(0)], /not a regular file/],
    ];
    for (const [what, regions, makeFds, message] of cases) {
      const fds = makeFds();
      const before = logs.length;
      assert.equal(
        await call(Request.SET_MEM_TABLE, encodeMemTable(regions), fds),
        1n,
        `${what}: answered as failed`,
      );
      for (const x of fds) fd.close(x);
      assert.equal(fd.openFdCount(), connected + 1, `${what}: every fd it brought is closed`);
      assert.equal(mappingsOf('guestfb-bad-ram'), 0, `${what}: nothing of it stays mapped`);
      assert.equal(mappingsOf('guestfb-good-ram'), 1, `${what}: the previous table stays`);
      const lines = logs.slice(before).filter((line) => !line.startsWith('debug: '));
      assert.equal(lines.length, 1, `${what}: one log line: ${lines.join(' | ')}`);
      assert.match(lines[0]!, /^warn: vhost-user SET_MEM_TABLE: /);
      assert.match(lines[0]!, message, what);
    }

    // ADD_MEM_REG is checked the same way.
    const short = memfd('guestfb-bad-ram', 4096);
    const add = new Uint8Array(40);
    add.set(encodeMemTable([region(8 * MiB, 8192, 0)]).subarray(8, 40), 8);
    assert.equal(await call(Request.ADD_MEM_REG, add, [short]), 1n);
    fd.close(short);
    assert.equal(fd.openFdCount(), connected + 1);
    assert.equal(mappingsOf('guestfb-bad-ram'), 0);
  } finally {
    front.close();
  }
  await until(() => !backend.connected, 'the session to end');
  assert.equal(fd.openFdCount(), withBackend, 'the session released its region');
  assert.equal(mappingsOf('guestfb-good-ram'), 0);
  backend.close();
  assert.equal(fd.openFdCount(), baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});
