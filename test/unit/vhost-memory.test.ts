import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, MemoryError } from '../../plugin/vhost-user/guest-memory.js';
import { FakeFds } from './virtio-gpu-harness.js';

const MiB = 1024 * 1024;

function setup() {
  const fds = new FakeFds();
  const memory = new GuestMemory(fds, (fd) => fds.close(fd));
  return { fds, memory };
}

test('regions translate guest-physical and user addresses with exact bounds', () => {
  const { fds, memory } = setup();
  const buffer = new ArrayBuffer(4 * MiB);
  new Uint8Array(buffer)[2 * MiB + 5] = 42;
  const fd = fds.memfd(buffer);
  memory.add(
    {
      guestAddr: 0x1_0000_0000n,
      size: BigInt(2 * MiB),
      userAddr: 0x7f00_0000_0000n,
      mmapOffset: BigInt(2 * MiB),
    },
    fd,
  );
  const gpa = 0x1_0000_0000;
  assert.equal(memory.guestBytes(gpa + 5, 1)![0], 42);
  assert.equal(memory.userBytes(0x7f00_0000_0000 + 5, 1)![0], 42);
  assert.notEqual(memory.guestBytes(gpa, 2 * MiB), null, 'whole region');
  assert.equal(memory.guestBytes(gpa, 2 * MiB + 1), null, 'one past');
  assert.equal(memory.guestBytes(gpa - 1, 2), null, 'one before');
  assert.equal(memory.guestBytes(gpa + 2 * MiB, 1), null, 'first byte after');
  assert.equal(memory.guestBytes(Number.MAX_SAFE_INTEGER, 1), null);
  assert.equal(memory.guestBytes(2 ** 60, 1), null);
  assert.equal(memory.guestBytes(-1, 1), null);
  assert.deepEqual(memory.translateToFdRanges(gpa + 4096, 8192), [
    { fd, offset: 2 * MiB + 4096, length: 8192 },
  ]);
});

test('a range spanning regions adjacent in guest-physical space yields one span per region', () => {
  const { fds, memory } = setup();
  const a = fds.memfd(new ArrayBuffer(MiB));
  const b = fds.memfd(new ArrayBuffer(MiB));
  memory.add(
    { guestAddr: BigInt(MiB), size: BigInt(MiB), userAddr: 0x10000000n, mmapOffset: 0n },
    b,
  );
  memory.add({ guestAddr: 0n, size: BigInt(MiB), userAddr: 0x20000000n, mmapOffset: 0n }, a);
  assert.deepEqual(memory.translateToFdRanges(MiB - 4096, 3 * 4096), [
    { fd: a, offset: MiB - 4096, length: 4096 },
    { fd: b, offset: 0, length: 8192 },
  ]);
  assert.equal(
    memory.translateToFdRanges(MiB - 4096, MiB + 4096 + 1),
    null,
    'past the second region',
  );
  assert.equal(memory.guestBytes(MiB - 4096, 8192), null, 'a view must lie in one region');
});

test('countSpans makes the same count appendSpans builds spans for, merges included', () => {
  const { fds, memory } = setup();
  // Two regions adjacent in guest-physical space, and a third after a hole.
  memory.add(
    { guestAddr: 0n, size: BigInt(MiB), userAddr: 0x10000000n, mmapOffset: 0n },
    fds.memfd(new ArrayBuffer(MiB)),
  );
  memory.add(
    { guestAddr: BigInt(MiB), size: BigInt(MiB), userAddr: 0x20000000n, mmapOffset: 0n },
    fds.memfd(new ArrayBuffer(MiB)),
  );
  memory.add(
    { guestAddr: BigInt(4 * MiB), size: BigInt(MiB), userAddr: 0x30000000n, mmapOffset: 0n },
    fds.memfd(new ArrayBuffer(MiB)),
  );
  const page = 4096;
  const lists: [number, number][][] = [
    [
      [0, page],
      [page, page],
      [2 * page, page],
    ], // contiguous: one span
    [
      [0, page],
      [2 * page, page],
    ], // a gap: two
    [[MiB - page, 2 * page]], // across the region boundary: two
    [
      [MiB - page, page],
      [MiB, page],
    ], // entries meeting at the boundary: two
    [
      [4 * MiB, page],
      [0, page],
      [4 * MiB + page, page],
    ], // back and forth: three
    [
      [page, page],
      [0, page],
    ], // descending: two
  ];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let n = 0; n < 200; n++) {
    const base = [0, MiB - 8 * page, 4 * MiB][n % 3]!;
    lists.push(
      Array.from({ length: 1 + Math.floor(random() * 12) }, () => [
        base + Math.floor(random() * 16) * page,
        (1 + Math.floor(random() * 3)) * page,
      ]),
    );
  }
  for (const list of lists) {
    const spans: Parameters<typeof memory.appendSpans>[2] = [];
    for (const [gpa, length] of list) assert.ok(memory.appendSpans(gpa, length, spans));
    assert.equal(
      memory.countSpans(
        list.map(([gpa]) => gpa),
        list.map(([, length]) => length),
      ),
      spans.length,
      JSON.stringify(list),
    );
  }
  assert.equal(memory.countSpans([2 * MiB], [page]), null, 'in the hole');
  assert.equal(memory.countSpans([5 * MiB - page], [2 * page]), null, 'past the last region');
  assert.equal(memory.countSpans([-page], [page]), null, 'negative');
  assert.equal(memory.countSpans([2 ** 60], [page]), null, 'not a safe integer');
});

test('bad regions are refused and their fds closed', () => {
  const { fds, memory } = setup();
  const buffer = new ArrayBuffer(MiB);
  const cases: [
    string,
    { guestAddr: bigint; size: bigint; userAddr: bigint; mmapOffset: bigint },
  ][] = [
    ['empty', { guestAddr: 0n, size: 0n, userAddr: 0n, mmapOffset: 0n }],
    ['beyond 2^53', { guestAddr: 1n << 60n, size: 4096n, userAddr: 0n, mmapOffset: 0n }],
    [
      'wraps',
      {
        guestAddr: BigInt(Number.MAX_SAFE_INTEGER) - 10n,
        size: 4096n,
        userAddr: 0n,
        mmapOffset: 0n,
      },
    ],
    [
      'user address wraps',
      { guestAddr: 0n, size: 4096n, userAddr: (1n << 64n) - 4096n, mmapOffset: 0n },
    ],
    ['mapping past the fd', { guestAddr: 0n, size: BigInt(2 * MiB), userAddr: 0n, mmapOffset: 0n }],
  ];
  for (const [what, region] of cases) {
    const fd = fds.memfd(buffer);
    assert.throws(() => memory.add(region, fd), what);
    assert.ok(fds.closed.includes(fd), `${what}: fd closed`);
  }
  const fd = fds.memfd(buffer);
  memory.add({ guestAddr: 0n, size: BigInt(MiB / 2), userAddr: 0n, mmapOffset: 0n }, fd);
  const overlap = fds.memfd(buffer);
  assert.throws(
    () =>
      memory.add(
        { guestAddr: BigInt(MiB / 2 - 1), size: 16n, userAddr: 0n, mmapOffset: 0n },
        overlap,
      ),
    MemoryError,
  );
  assert.ok(fds.closed.includes(overlap));
  for (let i = 1; i < 32; i++) {
    memory.add(
      { guestAddr: BigInt(i * MiB), size: 4096n, userAddr: 0n, mmapOffset: 0n },
      fds.memfd(buffer),
    );
  }
  const extra = fds.memfd(buffer);
  assert.throws(
    () =>
      memory.add({ guestAddr: BigInt(64 * MiB), size: 4096n, userAddr: 0n, mmapOffset: 0n }, extra),
    /more than 32/,
  );
  memory.clear();
  assert.equal(fds.files.size, 0, 'every fd closed');
  assert.equal(fds.mappings.size, 0, 'every mapping released');
});

test('an unaligned mmap offset maps from the page below', () => {
  const { fds, memory } = setup();
  const buffer = new ArrayBuffer(MiB);
  new Uint8Array(buffer)[4096 + 100] = 9;
  const fd = fds.memfd(buffer);
  memory.add({ guestAddr: 0n, size: 8192n, userAddr: 0n, mmapOffset: 4196n }, fd);
  assert.equal(memory.guestBytes(0, 1)![0], 9);
  assert.deepEqual(memory.translateToFdRanges(0, 10), [{ fd, offset: 4196, length: 10 }]);
});
