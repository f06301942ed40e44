// Runs INSIDE the kernel-tier VM (real /dev/udmabuf): scattered memfd pages become one dma-buf
// after coalescing, bytes travel both ways, and every refusal has its typed error, both from
// guestfb's checks and from the kernel itself. Started by test/vm/udmabuf.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DmaBufSync, Seal, fd, pageSize } from '../../../native/fd.js';
import {
  UdmabufError,
  UdmabufExporter,
  readUdmabufLimits,
  type UdmabufErrorCode,
} from '../../../plugin/dmabuf/index.js';
import { scatteredPages } from '../../helpers/scattered-pages.js';

const MiB = 1024 * 1024;
const FRAME_BYTES = 1920 * 1080 * 4;
const baseline = fd.openFdCount();
let exporter: UdmabufExporter;

test.before(() => {
  exporter = UdmabufExporter.open();
});

test.after(() => {
  exporter.dispose();
  assert.equal(fd.openFdCount(), baseline, 'every fd the tests opened was closed');
});

function refusal(code: UdmabufErrorCode, detectedBy: 'precheck' | 'kernel') {
  return (error: unknown): boolean => {
    assert.ok(error instanceof UdmabufError, `expected a UdmabufError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.detectedBy, detectedBy, error.message);
    return true;
  };
}

/** A sealable memfd of `bytes`, with `seals` added, filled with a byte pattern per page. */
function makeMemfd(bytes: number, seals: number, sealable = true): number {
  const memfd = fd.memfdCreate('guestfb-guest-ram', sealable);
  fd.ftruncate(memfd, bytes);
  if (seals !== 0) fd.addSeals(memfd, seals);
  return memfd;
}

test('the module parameters are readable: list_limit 1024, size_limit_mb 64', () => {
  const limits = readUdmabufLimits();
  assert.deepEqual(limits.assumed, []);
  assert.equal(limits.listLimit, 1024);
  assert.equal(limits.sizeLimitMb, 64);
  assert.deepEqual(exporter.limits, limits);
});

test('2025 scattered pages of a 1080p frame become one dma-buf; bytes travel both ways', () => {
  assert.equal(FRAME_BYTES / pageSize, 2025);
  // Size the memfd first (slots need the run count), then seal it.
  const probe = scatteredPages(0, 2025, pageSize, 12345);
  const memfd = makeMemfd(probe.bytes, Seal.SHRINK | Seal.GROW);
  const ram = fd.mmap(memfd, 0, probe.bytes, true);
  let dmabufMap: ArrayBuffer | null = null;
  let dmabuf = -1;
  try {
    const { pages } = scatteredPages(memfd, 2025, pageSize, 12345);
    assert.equal(pages.length, 2025);
    // Guest-side writes: each page starts with its frame index, the rest a pattern.
    const ramBytes = new Uint8Array(ram);
    const ramWords = new DataView(ram);
    pages.forEach((page, index) => {
      ramBytes.fill((index * 31) & 0xff, page.offset, page.offset + page.length);
      ramWords.setUint32(page.offset, index, true);
    });

    const created = exporter.create(pages);
    dmabuf = created.fd;
    assert.equal(created.size, FRAME_BYTES);
    assert.ok(created.rangeCount <= 1024, `${created.rangeCount} ranges after coalescing`);
    assert.ok(created.rangeCount > 1);
    assert.equal(fd.fdSize(dmabuf), FRAME_BYTES);

    dmabufMap = fd.mmap(dmabuf, 0, FRAME_BYTES, true);
    const frame = new Uint8Array(dmabufMap);
    const frameWords = new DataView(dmabufMap);
    fd.dmabufSync(dmabuf, DmaBufSync.START | DmaBufSync.RW);
    let differingPages = 0;
    pages.forEach((page, index) => {
      const expected = ramBytes.subarray(page.offset, page.offset + page.length);
      const actual = frame.subarray(index * pageSize, (index + 1) * pageSize);
      if (Buffer.compare(expected, actual) !== 0) differingPages++;
    });
    assert.equal(differingPages, 0, 'the dma-buf is the pages in frame order');
    // Writes through the dma-buf land in the guest page it maps.
    frameWords.setUint32(1000 * pageSize + 8, 0xc0ffee00, true);
    fd.dmabufSync(dmabuf, DmaBufSync.END | DmaBufSync.RW);
    assert.equal(ramWords.getUint32(pages[1000]!.offset + 8, true), 0xc0ffee00);
    const viaPread = new Uint8Array(4);
    fd.pread(memfd, viaPread, pages[1000]!.offset + 8);
    assert.deepEqual([...viaPread], [0x00, 0xee, 0xff, 0xc0]);
    // And guest writes (through the memfd) appear in the dma-buf.
    fd.pwrite(memfd, new Uint8Array([1, 2, 3, 4]), pages[2024]!.offset + 100);
    fd.dmabufSync(dmabuf, DmaBufSync.START | DmaBufSync.READ);
    assert.deepEqual(
      [...frame.subarray(2024 * pageSize + 100, 2024 * pageSize + 104)],
      [1, 2, 3, 4],
    );
    fd.dmabufSync(dmabuf, DmaBufSync.END | DmaBufSync.READ);

    // Without coalescing the list is over list_limit: guestfb refuses it, and so does the kernel.
    assert.throws(
      () => exporter.create(pages, { coalesce: false }),
      refusal('UDMABUF_LIST_LIMIT', 'precheck'),
    );
    assert.throws(
      () => exporter.create(pages, { precheck: false }),
      refusal('UDMABUF_LIST_LIMIT', 'kernel'),
    );
  } finally {
    if (dmabufMap) fd.munmap(dmabufMap);
    if (dmabuf >= 0) fd.close(dmabuf);
    fd.munmap(ram);
    fd.close(memfd);
  }
});

test('list_limit is exact in the kernel: 1024 separate ranges pass, 1025 are refused', () => {
  const memfd = makeMemfd(2 * 1025 * pageSize, Seal.SHRINK);
  try {
    const apart = (count: number) =>
      Array.from({ length: count }, (_, i) => ({
        fd: memfd,
        offset: 2 * i * pageSize,
        length: pageSize,
      }));
    const accepted = exporter.create(apart(1024), { precheck: false });
    assert.equal(accepted.rangeCount, 1024);
    fd.close(accepted.fd);
    assert.throws(
      () => exporter.create(apart(1025), { precheck: false }),
      refusal('UDMABUF_LIST_LIMIT', 'kernel'),
    );
    assert.throws(() => exporter.create(apart(1025)), refusal('UDMABUF_LIST_LIMIT', 'precheck'));
  } finally {
    fd.close(memfd);
  }
});

test('size_limit_mb is exact: 64 MiB pass, one page more is refused', () => {
  const memfd = makeMemfd(64 * MiB + pageSize, Seal.SHRINK);
  try {
    const atLimit = exporter.create([{ fd: memfd, offset: 0, length: 64 * MiB }]);
    assert.equal(fd.fdSize(atLimit.fd), 64 * MiB);
    fd.close(atLimit.fd);
    const over = [{ fd: memfd, offset: 0, length: 64 * MiB + pageSize }];
    assert.throws(() => exporter.create(over), refusal('UDMABUF_SIZE_LIMIT', 'precheck'));
    assert.throws(
      () => exporter.create(over, { precheck: false }),
      refusal('UDMABUF_SIZE_LIMIT', 'kernel'),
    );
  } finally {
    fd.close(memfd);
  }
});

test('seals: an unsealed memfd and one with F_SEAL_WRITE are refused, checked and by the kernel', () => {
  const cases: [number, boolean, UdmabufErrorCode][] = [
    [0, true, 'UDMABUF_NOT_SEALED'],
    [0, false, 'UDMABUF_NOT_SEALED'], // created without MFD_ALLOW_SEALING
    [Seal.SHRINK | Seal.WRITE, true, 'UDMABUF_WRITE_SEALED'],
  ];
  for (const [seals, sealable, code] of cases) {
    const memfd = makeMemfd(4 * pageSize, seals, sealable);
    try {
      const ranges = [{ fd: memfd, offset: 0, length: 2 * pageSize }];
      assert.throws(() => exporter.create(ranges), refusal(code, 'precheck'));
      assert.throws(() => exporter.create(ranges, { precheck: false }), refusal(code, 'kernel'));
      // The list ioctl refuses the same way.
      const two = [...ranges, { fd: memfd, offset: 3 * pageSize, length: pageSize }];
      assert.throws(() => exporter.create(two, { precheck: false }), refusal(code, 'kernel'));
    } finally {
      fd.close(memfd);
    }
  }
});

test('unaligned offsets and sizes are refused, checked and by the kernel', () => {
  const memfd = makeMemfd(8 * pageSize, Seal.SHRINK);
  try {
    for (const range of [
      { fd: memfd, offset: 512, length: pageSize },
      { fd: memfd, offset: pageSize, length: pageSize + 512 },
    ]) {
      assert.throws(() => exporter.create([range]), refusal('UDMABUF_UNALIGNED', 'precheck'));
      assert.throws(
        () => exporter.create([range], { precheck: false }),
        refusal('UDMABUF_UNALIGNED', 'kernel'),
      );
    }
  } finally {
    fd.close(memfd);
  }
});

test('a range past the end of its memfd is refused before the ioctl', () => {
  const memfd = makeMemfd(4 * pageSize, Seal.SHRINK);
  try {
    assert.throws(
      () => exporter.create([{ fd: memfd, offset: 2 * pageSize, length: 4 * pageSize }]),
      refusal('UDMABUF_BAD_RANGE', 'precheck'),
    );
  } finally {
    fd.close(memfd);
  }
});

test('the per-resource cache keeps one dma-buf until the backing changes or is released', () => {
  const before = fd.openFdCount();
  const memfd = makeMemfd(16 * pageSize, Seal.SHRINK);
  try {
    const backing = [{ fd: memfd, offset: 0, length: 8 * pageSize }];
    const first = exporter.acquire(1, 1, backing);
    assert.equal(exporter.acquire(1, 1, backing), first);
    assert.equal(fd.openFdCount(), before + 2, 'memfd and one dma-buf');
    const second = exporter.acquire(1, 2, [
      { fd: memfd, offset: 8 * pageSize, length: 8 * pageSize },
    ]);
    assert.notEqual(second, first);
    assert.equal(fd.openFdCount(), before + 2, 'the old generation was closed');
    exporter.acquire(2, 1, backing);
    assert.equal(fd.openFdCount(), before + 3);
    exporter.release(1);
    exporter.release(2);
    assert.equal(exporter.cachedCount, 0);
  } finally {
    fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), before);
});
