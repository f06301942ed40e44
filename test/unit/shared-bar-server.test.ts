// guestfb's ivshmem server and the shared BAR source over a real AF_UNIX socket: the test plays
// QEMU's ivshmem-doorbell (receives version, id, the shared memory fd and eventfds with
// SCM_RIGHTS), writes the BAR header as a guest would, rings guestfb's doorbell, and checks the
// source's events and that the process fd count returns to baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd, Seal } from '../../native/fd.js';
import { DrmFormat } from '../../plugin/common/formats.js';
import {
  barSizeProblem,
  createSharedBarSource,
  Field,
  HOST_MAGIC,
  IvshmemServer,
  parseSize,
  readHostRequest,
  writeBarHeader,
  type HeaderFields,
} from '../../plugin/sources/shared-bar/index.js';
import type {
  CursorUpdate,
  Rect,
  ScanoutInfo,
  SourceResource,
} from '../../plugin/sources/types.js';
import { until } from '../helpers/wait.js';

interface Received {
  value: bigint;
  fd: number | null;
}

/** A fake QEMU ivshmem client: reads 8-byte messages (each fd arrives with its message). */
class FakePeer {
  readonly conn: number;
  readonly messages: Received[] = [];
  private pending = new Uint8Array(0);
  private pendingFd: number | null = null;

  constructor(socketPath: string) {
    this.conn = fd.unixConnect(socketPath);
  }

  /** Reads until `count` messages arrived in total (blocking poll, bounded). */
  read(count: number): Received[] {
    while (this.messages.length < count) {
      assert.ok(fd.pollReadable(this.conn, 5000), 'server message within 5 s');
      const chunk = fd.unixRecv(this.conn, 8 - this.pending.length);
      if (chunk === null) continue;
      assert.ok(chunk.data.length > 0, 'server closed the connection');
      assert.ok(chunk.fds.length <= 1 && !(chunk.fds.length && this.pendingFd !== null));
      if (chunk.fds.length) this.pendingFd = chunk.fds[0]!;
      const joined = new Uint8Array(this.pending.length + chunk.data.length);
      joined.set(this.pending);
      joined.set(chunk.data, this.pending.length);
      this.pending = joined;
      if (this.pending.length === 8) {
        const value = new DataView(this.pending.buffer).getBigInt64(0, true);
        this.messages.push({ value, fd: this.pendingFd });
        this.pending = new Uint8Array(0);
        this.pendingFd = null;
      }
    }
    return this.messages;
  }

  close(): void {
    for (const m of this.messages) if (m.fd !== null) fd.close(m.fd);
    fd.close(this.conn);
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

test('BAR sizes: binary units, powers of two only', () => {
  assert.equal(parseSize('64M'), 64 * 1024 * 1024);
  assert.equal(parseSize('1g'), 1024 ** 3);
  assert.equal(parseSize('8192'), 8192);
  assert.ok(Number.isNaN(parseSize('64MB')));
  assert.equal(barSizeProblem(64 * 1024 * 1024), null);
  assert.match(barSizeProblem(48 * 1024 * 1024)!, /not a power of two/);
  assert.match(barSizeProblem(4096)!, /outside 8 KiB/);
  assert.match(barSizeProblem(2 ** 35)!, /outside/);
});

test('ivshmem server protocol: version, id, shm fd, eventfds, peer notices, fd baseline', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-ivshmem-'));
  const baseline = fd.openFdCount();
  const shm = fd.memfdCreate('test-shm', true);
  fd.ftruncate(shm, 65536);
  const socketPath = path.join(dir, 'ivshmem.sock');
  const doorbells: number[] = [];
  const events: string[] = [];
  const server = new IvshmemServer({
    socketPath,
    shmFd: shm,
    vectors: 2,
    maxClients: 2,
    onDoorbell: (vector) => doorbells.push(vector),
    onConnect: (id) => events.push(`+${id}`),
    onDisconnect: (id, reason) => events.push(`-${id} ${reason}`),
    log: (_level, message) => events.push(`log ${message}`),
  });
  const first = new FakePeer(socketPath);
  try {
    await until(() => server.peers().length === 1, 'the first client', { intervalMs: 1 });
    const got = first.read(7);
    const values = got.map((m) => Number(m.value));
    // version 0, id 1, -1 + shm, host peer 0 x 2 vectors, own id 1 x 2 vectors
    assert.deepEqual(values, [0, 1, -1, 0, 0, 1, 1]);
    assert.deepEqual(
      got.map((m) => m.fd !== null),
      [false, false, true, true, true, true, true],
    );
    // The shm fd is the same memory: a write through it shows in the server's memfd.
    const shmFd = got[2]!.fd!;
    assert.equal(fd.fdSize(shmFd), 65536);
    fd.pwrite(shmFd, new Uint8Array([1, 2, 3]), 100);
    const back = new Uint8Array(3);
    fd.pread(shm, back, 100);
    assert.deepEqual([...back], [1, 2, 3]);

    // Ringing guestfb's vector 1 (what QEMU does on a Doorbell write of 0 << 16 | 1).
    fd.eventfdWrite(got[4]!.fd!, 1);
    await until(() => doorbells.length === 1, 'the doorbell', { intervalMs: 1 });
    assert.deepEqual(doorbells, [1]);
    // guestfb can interrupt the client: its own vector 0 eventfd becomes readable.
    assert.equal(server.ring(1, 0), true);
    assert.equal(fd.eventfdRead(got[5]!.fd!), 1);
    assert.equal(server.ring(9, 0), false);

    // A second client hears about guestfb and the first; the first hears about the second.
    const second = new FakePeer(socketPath);
    try {
      await until(() => server.peers().length === 2, 'the second client', { intervalMs: 1 });
      const got2 = second.read(9);
      assert.deepEqual(
        got2.map((m) => Number(m.value)),
        [0, 2, -1, 0, 0, 1, 1, 2, 2],
      );
      assert.ok(got2.slice(2).every((m) => m.fd !== null));
      const notice = first.read(9).slice(7);
      assert.deepEqual(
        notice.map((m) => [Number(m.value), m.fd !== null]),
        [
          [2, true],
          [2, true],
        ],
      );
      // Peer 1's eventfd as received by peer 2 interrupts peer 1.
      fd.eventfdWrite(got2[5]!.fd!, 1);
      assert.equal(fd.eventfdRead(got[5]!.fd!), 1);
    } finally {
      second.close();
    }
    await until(() => server.peers().length === 1, 'the second client to leave', { intervalMs: 1 });
    const gone = first.read(10)[9]!;
    assert.deepEqual([Number(gone.value), gone.fd], [2, null], 'disconnect notice without fd');

    // A client that talks on the one-way connection is dropped.
    const chatty = new FakePeer(socketPath);
    await until(() => server.peers().length === 2, 'the chatty client', { intervalMs: 1 });
    fd.unixSend(chatty.conn, new Uint8Array([1]));
    await until(() => server.peers().length === 1, 'the chatty client to be dropped', {
      intervalMs: 1,
    });
    chatty.close();
    assert.ok(events.some((e) => /-2 client sent 1 bytes on a one-way connection/.test(e)));
  } finally {
    first.close();
    await tick();
    server.close();
    fd.close(shm);
  }
  assert.deepEqual(server.peers(), []);
  assert.ok(events.includes('+1') && events.some((e) => e.startsWith('-1 ')));
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
  rmSync(dir, { recursive: true, force: true });
});

test('one ivshmem client by default: a further one is refused with a log line, the first goes on', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-ivshmem-'));
  const baseline = fd.openFdCount();
  const shm = fd.memfdCreate('test-shm', true);
  fd.ftruncate(shm, 8192);
  const logs: string[] = [];
  const socketPath = path.join(dir, 's');
  const server = new IvshmemServer({ socketPath, shmFd: shm, log: (_level, m) => logs.push(m) });
  const a = new FakePeer(socketPath);
  await until(() => server.peers().length === 1, 'the first client', { intervalMs: 1 });
  const setup = a.read(5);
  const b = new FakePeer(socketPath);
  await until(() => server.counters.refused === 1, 'the refusal', { intervalMs: 1 });
  assert.ok(fd.pollReadable(b.conn, 5000));
  const refusal = fd.unixRecv(b.conn, 8);
  assert.equal(refusal?.data.length, 0, 'refused client sees end of stream');
  assert.deepEqual(refusal?.fds, [], 'refused client got no fd (no BAR memfd)');
  assert.equal(logs.length, 1);
  assert.match(
    logs[0]!,
    new RegExp(
      `^refused a client \\(pid ${process.pid}, uid \\d+\\) on ${socketPath}: 1 of 1 peers connected`,
    ),
  );
  // The first client is unaffected: still a peer, still interrupted through its eventfd.
  assert.deepEqual(server.peers(), [1]);
  assert.equal(server.ring(1, 0), true);
  assert.equal(fd.eventfdRead(setup[4]!.fd!), 1);
  a.close();
  b.close();
  await tick();
  server.close();
  fd.close(shm);
  assert.equal(fd.openFdCount(), baseline);
  rmSync(dir, { recursive: true, force: true });
});

test('ivshmem peers: 1..64', () => {
  const shm = fd.memfdCreate('test-shm', true);
  try {
    for (const maxClients of [0, 65, 1.5]) {
      assert.throws(
        () => new IvshmemServer({ socketPath: '/nonexistent/s', shmFd: shm, maxClients }),
        /ivshmem peers must be 1\.\.64/,
      );
    }
  } finally {
    fd.close(shm);
  }
});

test('shared BAR source: sealed memfd, header -> scanout, doorbell -> flush, bad header once', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bar-'));
  const baseline = fd.openFdCount();
  const logs: string[] = [];
  const barSize = 1 << 20;
  const source = createSharedBarSource({
    ivshmemSocket: path.join(dir, 'bar.sock'),
    barSize,
    pollMs: 0,
    log: (_level, m) => logs.push(m),
  });
  const flushes: Rect[][] = [];
  const scanouts: (ScanoutInfo | null)[] = [];
  const created: SourceResource[] = [];
  const destroyed: number[] = [];
  const disconnects: string[] = [];
  source.on('flush', (_head, damage) => flushes.push(damage.map((r) => ({ ...r }))));
  source.on('scanoutSet', (_head, s) => scanouts.push(s));
  source.on('resourceCreated', (r) => created.push(r));
  source.on('resourceDestroyed', (id) => destroyed.push(id));
  source.on('disconnected', (reason) => disconnects.push(reason));
  const qemu = new FakePeer(path.join(dir, 'bar.sock'));
  let mapping: ArrayBuffer | null = null;
  try {
    assert.equal(fd.getSeals(source.memfd), Seal.SHRINK | Seal.GROW, 'SHRINK|GROW, never WRITE');
    assert.equal(fd.fdSize(source.memfd), barSize);
    assert.deepEqual(
      source.heads().map((h) => h.enabled),
      [false],
      'no head before a header',
    );
    await until(() => source.server!.peers().length === 1, 'QEMU to be accepted', {
      intervalMs: 1,
    });
    const got = qemu.read(5);
    assert.deepEqual(
      got.map((m) => Number(m.value)),
      [0, 1, -1, 0, 1],
    );
    mapping = fd.mmap(got[2]!.fd!, 0, barSize, true);
    const bar = new DataView(mapping);
    assert.equal(bar.getUint32(Field.hostMagic, true), HOST_MAGIC);
    assert.equal(bar.getUint32(Field.hostPeer, true), 0, "guestfb's peer id for the doorbell");
    const ring = () => fd.eventfdWrite(got[3]!.fd!, 1);

    const fields: HeaderFields = {
      fourcc: DrmFormat.XRGB8888,
      width: 64,
      height: 32,
      stride: 256,
      offset: 8192,
      sequence: 2,
    };
    writeBarHeader(bar, fields);
    ring();
    await until(() => flushes.length === 1, 'the first flush', { intervalMs: 1 });
    assert.deepEqual(flushes[0], [{ x: 0, y: 0, width: 64, height: 32 }]);
    assert.deepEqual(source.heads()[0], {
      id: 0,
      width: 64,
      height: 32,
      x: 0,
      y: 0,
      enabled: true,
      name: 'ivshmem',
    });
    const resource = created[0]!;
    assert.deepEqual(resource.backing, [{ fd: source.memfd, offset: 8192, length: 8192 }]);
    assert.deepEqual(
      [resource.width, resource.height, resource.stride, resource.offset],
      [64, 32, 256, 0],
    );
    assert.equal(scanouts.at(-1)?.resourceId, resource.id);

    // The next frame with damage: the same resource, the guest's damage.
    writeBarHeader(bar, { ...fields, sequence: 4, damage: [{ x: 1, y: 2, width: 3, height: 4 }] });
    ring();
    await until(() => flushes.length === 2, 'the second flush', { intervalMs: 1 });
    assert.deepEqual(flushes[1], [{ x: 1, y: 2, width: 3, height: 4 }]);
    assert.equal(created.length, 1, 'no new buffer for a new frame');
    // A skipped frame: damage of one frame is not enough, the whole frame is flushed.
    writeBarHeader(bar, { ...fields, sequence: 8, damage: [{ x: 1, y: 2, width: 3, height: 4 }] });
    source.poll();
    assert.deepEqual(flushes[2], [{ x: 0, y: 0, width: 64, height: 32 }]);
    // Mid-write (odd) and unchanged sequences flush nothing.
    bar.setUint32(Field.sequence, 9, true);
    source.poll();
    bar.setUint32(Field.sequence, 8, true);
    source.poll();
    assert.equal(flushes.length, 3);

    // Pixels through the explicit copy fallback, counted.
    new Uint32Array(mapping, 8192 + 256 * 3, 64).fill(0xff112233);
    const target = new Uint8Array(8);
    assert.equal(source.readPixels(resource.id, { x: 0, y: 3, width: 2, height: 1 }, target), true);
    assert.deepEqual([...target], [0x33, 0x22, 0x11, 0xff, 0x33, 0x22, 0x11, 0xff]);
    assert.equal(source.stats().bytesCopied, 8);

    // A hostile header: refused, logged once however often it is polled, frame state kept.
    writeBarHeader(bar, { ...fields, sequence: 10, offset: barSize - 4096 });
    for (let i = 0; i < 5; i++) {
      ring();
      await until(() => source.stats().doorbells! >= 3 + i, 'the doorbell', { intervalMs: 1 });
    }
    writeBarHeader(bar, { ...fields, sequence: 12, offset: barSize - 4096 });
    source.poll();
    const bad = logs.filter((l) => l.startsWith('bad header'));
    assert.equal(bad.length, 1, bad.join('\n'));
    assert.match(bad[0]!, /framebuffer 1044480\+256x32 ends at 1052672, past the 1048576-byte BAR/);
    assert.equal(flushes.length, 3);
    assert.equal(source.stats().invalidHeaders, 2);

    // A new layout replaces the buffer: new resource, old one destroyed, full damage.
    writeBarHeader(bar, { ...fields, width: 32, stride: 128, sequence: 14 });
    source.poll();
    assert.equal(created.length, 2);
    assert.deepEqual(destroyed, [resource.id]);
    assert.equal(source.scanout(0)?.resourceId, created[1]!.id);
    assert.deepEqual(flushes.at(-1), [{ x: 0, y: 0, width: 32, height: 32 }]);
    assert.equal(source.stats().layoutChanges, 2);
  } finally {
    if (mapping) fd.munmap(mapping);
    qemu.close();
  }
  // QEMU going away: the source says so and forgets the guest's header.
  await until(() => disconnects.length === 1, 'the disconnect', { intervalMs: 1 });
  assert.equal(source.scanout(0), null);
  const magic = new Uint8Array(4);
  fd.pread(source.memfd, magic, 0);
  assert.deepEqual([...magic], [0, 0, 0, 0]);
  source.close();
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
  rmSync(dir, { recursive: true, force: true });
});

test('shared BAR source in plain mode polls an existing memfd and prints QEMU arguments', async () => {
  const baseline = fd.openFdCount();
  const memfd = fd.memfdCreate('plain-bar', true);
  fd.ftruncate(memfd, 65536);
  const source = createSharedBarSource({ memfd, pollMs: 1, log: () => undefined });
  const flushes: number[] = [];
  source.on('flush', () => flushes.push(1));
  const header = new DataView(new ArrayBuffer(4096));
  writeBarHeader(header, {
    fourcc: DrmFormat.XRGB8888,
    width: 16,
    height: 16,
    stride: 64,
    offset: 4096,
    sequence: 2,
  });
  fd.pwrite(memfd, new Uint8Array(header.buffer, 0, 512), 0);
  await until(() => flushes.length === 1, 'the polled frame', { intervalMs: 1 });
  assert.equal(source.stats().polledFrames, 1);
  assert.equal(source.server, null);
  assert.deepEqual(source.plainQemuArgs('bar'), [
    '-object',
    `memory-backend-file,id=bar,mem-path=/proc/${process.pid}/fd/${memfd},size=65536,share=on`,
    '-device',
    'ivshmem-plain,memdev=bar',
  ]);
  source.close();
  assert.ok(fd.fdSize(memfd) === 65536, 'a borrowed memfd stays open');
  fd.close(memfd);
  assert.equal(fd.openFdCount(), baseline);
});

test('shared BAR source: cursor shown, moved, replaced and hidden from the header', () => {
  const baseline = fd.openFdCount();
  const memfd = fd.memfdCreate('cursor-bar', true);
  fd.ftruncate(memfd, 65536);
  const source = createSharedBarSource({ memfd, pollMs: 0, log: () => undefined });
  const updates: CursorUpdate[] = [];
  source.on('cursor', (update) => updates.push(update));
  const mapping = fd.mmap(memfd, 0, 65536, true);
  try {
    const bar = new DataView(mapping);
    new Uint32Array(mapping, 16384, 4 * 4).fill(0x80ff0000);
    const frame = (sequence: number, cursor?: HeaderFields['cursor']) => {
      writeBarHeader(bar, {
        fourcc: DrmFormat.XRGB8888,
        width: 16,
        height: 16,
        stride: 64,
        offset: 4096,
        sequence,
        cursor,
      });
      source.poll();
    };
    const cursor = { visible: 1, x: 3, y: 4, hotX: 1, hotY: 1, width: 4, height: 4 };
    frame(2, { ...cursor, imageOffset: 16384, serial: 1 });
    assert.equal(updates.length, 1);
    assert.deepEqual([updates[0]!.x, updates[0]!.y, updates[0]!.image?.width], [3, 4, 4]);
    assert.deepEqual([...updates[0]!.image!.pixels.subarray(0, 4)], [0, 0, 0xff, 0x80]);
    frame(4, { ...cursor, x: 9, imageOffset: 16384, serial: 1 });
    assert.deepEqual(updates[1], { headId: 0, x: 9, y: 4 }, 'a move carries no image');
    frame(6, { ...cursor, x: 9, imageOffset: 16384, serial: 1 });
    assert.equal(updates.length, 2, 'no update when nothing moved');
    frame(8, { ...cursor, x: 9, imageOffset: 16384, serial: 2 });
    assert.ok(updates[2]!.image, 'a new serial sends the image again');
    frame(10, { ...cursor, visible: 0 });
    assert.equal(updates[3]!.image, null, 'hidden');
  } finally {
    fd.munmap(mapping);
    source.close();
    fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('shared BAR source: host size requests reach the host area; a v2 writer acknowledges them', () => {
  const baseline = fd.openFdCount();
  const memfd = fd.memfdCreate('request-bar', true);
  fd.ftruncate(memfd, 1 << 20);
  const logs: string[] = [];
  const source = createSharedBarSource({ memfd, pollMs: 0, log: (_l, m) => logs.push(m) });
  const scanouts: (ScanoutInfo | null)[] = [];
  source.on('scanoutSet', (_head, scanout) => scanouts.push(scanout));
  const page = new DataView(new ArrayBuffer(4096));
  const hostArea = () => {
    fd.pread(memfd, new Uint8Array(page.buffer), 0);
    return readHostRequest(page);
  };
  const commit = (fields: Partial<HeaderFields> & { width: number; height: number }) => {
    const header = new DataView(new ArrayBuffer(512));
    writeBarHeader(header, {
      fourcc: DrmFormat.XRGB8888,
      stride: fields.width * 4,
      offset: 4096,
      sequence: 2,
      ...fields,
    });
    fd.pwrite(memfd, new Uint8Array(header.buffer), 0);
    source.poll();
  };
  try {
    // Before any writer: written for the writer to find when it starts.
    assert.equal(source.requestHeadSize(0, 64, 32), true);
    assert.deepEqual(hostArea(), { sequence: 2, width: 64, height: 32 });

    // A version-1 writer ignores requests: written, but not offered.
    commit({ version: 1, width: 16, height: 16 });
    assert.equal(source.requestHeadSize(0, 128, 64), false);
    assert.deepEqual(hostArea(), { sequence: 4, width: 128, height: 64 });
    assert.ok(logs.some((line) => /header version 1: no size requests/.test(line)));

    // A version-2 writer takes it: a new layout at the requested size, acknowledged.
    commit({ width: 128, height: 64, sequence: 4, requestAck: 4 });
    assert.deepEqual(
      [scanouts.at(-1)?.width, scanouts.at(-1)?.height, scanouts.at(-1)?.stride],
      [128, 64, 512],
    );
    assert.equal(source.requestHeadSize(0, 100, 50), true);
    const stats = source.stats();
    assert.equal(stats.requestsAcked, 1);
    assert.equal(stats.sizeRequests, 3);
    assert.equal(stats.layoutChanges, 2);
    assert.ok(logs.some((line) => /handled size request 4: framebuffer 128x64/.test(line)));

    // Refused without writing anything: another head, sizes out of range, too big for the BAR.
    const before = hostArea();
    assert.equal(source.requestHeadSize(1, 100, 50), false);
    assert.equal(source.requestHeadSize(0, 0, 50), false);
    assert.equal(source.requestHeadSize(0, 16385, 50), false);
    assert.equal(source.requestHeadSize(0, 1.5, 50), false);
    assert.equal(source.requestHeadSize(0, 512, 512), false, '1 MiB + header page > 1 MiB BAR');
    assert.ok(logs.some((line) => /512x512 does not fit the 1048576-byte BAR/.test(line)));
    assert.deepEqual(hostArea(), before);
    assert.deepEqual(before, { sequence: 6, width: 100, height: 50 });
  } finally {
    source.close();
    fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), baseline);
});
