// plugin/dmabuf on the host: limits, shape checks, coalescing, errno mapping and the exporter's
// cache (with fake syscalls), plus seal checks on real memfds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fd, Seal } from '../../native/fd.js';
import {
  DEFAULT_LIST_LIMIT,
  DEFAULT_SIZE_LIMIT_MB,
  UdmabufError,
  UdmabufExporter,
  UdmabufFailedError,
  UdmabufListLimitError,
  UdmabufSizeLimitError,
  checkRangeShapes,
  coalesceRanges,
  explainUdmabufFailure,
  nativeUdmabufSyscalls,
  planUdmabuf,
  readUdmabufLimits,
  type MemfdQueries,
  type MemfdRange,
  type UdmabufErrorCode,
  type UdmabufSyscalls,
} from '../../plugin/dmabuf/index.js';
import { scatteredPages } from '../helpers/scattered-pages.js';

const PAGE = 4096;
const MiB = 1024 * 1024;
const limits = { listLimit: 1024, sizeLimitBytes: 64 * MiB };
const baseline = fd.openFdCount();

test.after(() => {
  assert.equal(fd.openFdCount(), baseline, 'every fd the tests opened was closed');
});

function systemError(code: string, syscall = 'ioctl(UDMABUF_CREATE_LIST)'): Error {
  return Object.assign(new Error(`${syscall}: ${code}`), { code, errno: 22, syscall });
}

/** Queries for fake fds: every fd is a properly sealed 1 GiB memfd unless told otherwise. */
function fakeQueries(
  overrides: { seals?: Record<number, number | string>; sizes?: Record<number, number> } = {},
): MemfdQueries {
  return {
    fileSize: (fd) => overrides.sizes?.[fd] ?? 1024 * MiB,
    seals: (fd) => {
      const seals = overrides.seals?.[fd] ?? Seal.SHRINK | Seal.GROW | Seal.SEAL;
      if (typeof seals === 'string') throw systemError(seals, 'fcntl');
      return seals;
    },
  };
}

function refusal(code: UdmabufErrorCode, detectedBy: 'precheck' | 'kernel' = 'precheck') {
  return (error: unknown): boolean => {
    assert.ok(error instanceof UdmabufError, `expected a UdmabufError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.detectedBy, detectedBy);
    return true;
  };
}

const plan = (ranges: MemfdRange[], queries = fakeQueries(), coalesce = true) =>
  planUdmabuf(ranges, { pageSize: PAGE, limits, coalesce }, queries);

test('limits come from the module parameters, or defaults that are reported as assumed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'guestfb-udmabuf-'));
  try {
    writeFileSync(path.join(dir, 'list_limit'), '2048\n');
    writeFileSync(path.join(dir, 'size_limit_mb'), '128\n');
    assert.deepEqual(readUdmabufLimits(dir), {
      listLimit: 2048,
      sizeLimitMb: 128,
      sizeLimitBytes: 128 * MiB,
      assumed: [],
    });
    writeFileSync(path.join(dir, 'size_limit_mb'), 'lots\n');
    assert.deepEqual(readUdmabufLimits(dir).assumed, ['size_limit_mb']);
    writeFileSync(path.join(dir, 'list_limit'), '0\n');
    assert.equal(readUdmabufLimits(dir).listLimit, DEFAULT_LIST_LIMIT);
  } finally {
    rmSync(dir, { recursive: true });
  }
  const absent = readUdmabufLimits(path.join(tmpdir(), 'guestfb-no-such-dir', 'parameters'));
  assert.deepEqual(absent, {
    listLimit: 1024,
    sizeLimitMb: 64,
    sizeLimitBytes: 64 * MiB,
    assumed: ['list_limit', 'size_limit_mb'],
  });
  assert.equal(DEFAULT_SIZE_LIMIT_MB, 64);
});

test('shape checks: alignment, positive lengths, safe integers, overflow', () => {
  assert.equal(checkRangeShapes([{ fd: 3, offset: 0, length: 2 * PAGE }], PAGE), 2 * PAGE);
  assert.throws(() => checkRangeShapes([], PAGE), refusal('UDMABUF_BAD_RANGE'));
  assert.throws(
    () => checkRangeShapes([{ fd: 3, offset: 100, length: PAGE }], PAGE),
    refusal('UDMABUF_UNALIGNED'),
  );
  assert.throws(
    () => checkRangeShapes([{ fd: 3, offset: PAGE, length: PAGE + 1 }], PAGE),
    refusal('UDMABUF_UNALIGNED'),
  );
  for (const bad of [
    { fd: 3, offset: 0, length: 0 },
    { fd: 3, offset: -PAGE, length: PAGE },
    { fd: 3, offset: 0.5, length: PAGE },
    { fd: -1, offset: 0, length: PAGE },
    { fd: 3, offset: 2 ** 53, length: PAGE },
    { fd: 3, offset: 0, length: Number.NaN },
    // Each number is safe, their sum is not.
    { fd: 3, offset: 2 ** 53 - PAGE, length: 2 * PAGE },
  ]) {
    assert.throws(
      () => checkRangeShapes([bad], PAGE),
      refusal('UDMABUF_BAD_RANGE'),
      JSON.stringify(bad),
    );
  }
  const half = 2 ** 52;
  assert.throws(
    () =>
      checkRangeShapes(
        [
          { fd: 3, offset: 0, length: half },
          { fd: 4, offset: 0, length: half },
        ],
        PAGE,
      ),
    refusal('UDMABUF_BAD_RANGE'),
    'the total must stay a safe integer',
  );
  assert.throws(() => checkRangeShapes([{ fd: 3, offset: 0, length: PAGE }], 3000), RangeError);
  // A 16 KiB page system rejects what is only 4 KiB aligned.
  assert.throws(
    () => checkRangeShapes([{ fd: 3, offset: PAGE, length: 4 * PAGE }], 4 * PAGE),
    refusal('UDMABUF_UNALIGNED'),
  );
});

test('coalescing merges only consecutive continuations in the same fd and keeps the order', () => {
  const ranges: MemfdRange[] = [
    { fd: 3, offset: 0, length: PAGE },
    { fd: 3, offset: PAGE, length: 2 * PAGE }, // continues the first
    { fd: 4, offset: 3 * PAGE, length: PAGE }, // other fd at the "next" offset: kept apart
    { fd: 3, offset: 3 * PAGE, length: PAGE }, // continues range 1, but not its neighbour
    { fd: 3, offset: 5 * PAGE, length: PAGE }, // gap
    { fd: 3, offset: 4 * PAGE, length: PAGE }, // backwards: the byte order must stay
    { fd: 3, offset: 5 * PAGE, length: PAGE },
  ];
  assert.deepEqual(coalesceRanges(ranges), [
    { fd: 3, offset: 0, length: 3 * PAGE },
    { fd: 4, offset: 3 * PAGE, length: PAGE },
    { fd: 3, offset: 3 * PAGE, length: PAGE },
    { fd: 3, offset: 5 * PAGE, length: PAGE },
    { fd: 3, offset: 4 * PAGE, length: 2 * PAGE },
  ]);
  assert.deepEqual(ranges[0], { fd: 3, offset: 0, length: PAGE }, 'the input is not modified');
  assert.deepEqual(coalesceRanges([]), []);
});

test('a 1080p framebuffer in 2025 scattered pages fits list_limit only after coalescing', () => {
  const pages = scatteredPages(3, 2025, PAGE, 7).pages;
  assert.equal(pages.length, 2025);
  assert.equal(1920 * 1080 * 4, 2025 * PAGE);
  const result = plan(pages);
  assert.ok(result.ranges.length < 1024, `${result.ranges.length} ranges`);
  assert.ok(result.ranges.length > 1, 'the pages are scattered');
  assert.equal(result.totalBytes, 1920 * 1080 * 4);
  assert.equal(result.inputCount, 2025);
  // Expanding the plan back to pages gives the original order.
  const expanded = result.ranges.flatMap((range) =>
    Array.from({ length: range.length / PAGE }, (_, i) => range.offset + i * PAGE),
  );
  assert.deepEqual(
    expanded,
    pages.map((page) => page.offset),
  );
  assert.throws(
    () => plan(pages, fakeQueries(), false),
    (error: unknown) => {
      assert.ok(error instanceof UdmabufListLimitError);
      assert.equal(error.count, 2025);
      assert.equal(error.listLimit, 1024);
      return true;
    },
  );
});

test('list_limit counts ranges after coalescing: 1024 pass, 1025 are refused', () => {
  const apart = (count: number) =>
    Array.from({ length: count }, (_, i) => ({ fd: 3, offset: 2 * i * PAGE, length: PAGE }));
  assert.equal(plan(apart(1024)).ranges.length, 1024);
  assert.throws(() => plan(apart(1025)), refusal('UDMABUF_LIST_LIMIT'));
  const contiguous = Array.from({ length: 5000 }, (_, i) => ({
    fd: 3,
    offset: i * PAGE,
    length: PAGE,
  }));
  assert.equal(plan(contiguous).ranges.length, 1);
});

test('size_limit: exactly the limit passes, one page more is refused', () => {
  assert.equal(plan([{ fd: 3, offset: 0, length: 64 * MiB }]).totalBytes, 64 * MiB);
  assert.throws(
    () =>
      plan([
        { fd: 3, offset: 0, length: 64 * MiB },
        { fd: 3, offset: 64 * MiB, length: PAGE },
      ]),
    (error: unknown) => {
      assert.ok(error instanceof UdmabufSizeLimitError);
      assert.equal(error.bytes, 64 * MiB + PAGE);
      assert.equal(error.limitBytes, 64 * MiB);
      return true;
    },
  );
});

test('ranges must lie inside their memfd', () => {
  const queries = fakeQueries({ sizes: { 3: 8 * PAGE, 4: 2 * PAGE } });
  assert.equal(plan([{ fd: 3, offset: 4 * PAGE, length: 4 * PAGE }], queries).ranges.length, 1);
  assert.throws(
    () => plan([{ fd: 3, offset: 4 * PAGE, length: 5 * PAGE }], queries),
    refusal('UDMABUF_BAD_RANGE'),
  );
  assert.throws(
    () =>
      plan(
        [
          { fd: 3, offset: 0, length: PAGE },
          { fd: 4, offset: 2 * PAGE, length: PAGE },
        ],
        queries,
      ),
    /range 1: ends at 12288, past the end of fd 4/,
  );
});

test('seals: F_SEAL_SHRINK required, F_SEAL_WRITE refused, unsealable fds are not memfds', () => {
  const only = (seals: number | string) => fakeQueries({ seals: { 3: seals } });
  const one = [{ fd: 3, offset: 0, length: PAGE }];
  assert.equal(plan(one, only(Seal.SHRINK)).ranges.length, 1);
  assert.throws(() => plan(one, only(0)), refusal('UDMABUF_NOT_SEALED'));
  assert.throws(() => plan(one, only(Seal.GROW | Seal.SEAL)), refusal('UDMABUF_NOT_SEALED'));
  assert.throws(() => plan(one, only(Seal.SHRINK | Seal.WRITE)), refusal('UDMABUF_WRITE_SEALED'));
  assert.throws(() => plan(one, only('EINVAL')), refusal('UDMABUF_NOT_MEMFD'));
  assert.throws(() => plan(one, only('EBADF')), /EBADF/, 'other query failures propagate');
});

test("the kernel's errno is mapped back onto the same typed errors", () => {
  const context = (ranges: MemfdRange[], queries = fakeQueries()) => ({
    ranges,
    limits,
    pageSize: PAGE,
    queries,
  });
  const einval = systemError('EINVAL');
  const pages = (count: number) =>
    Array.from({ length: count }, (_, i) => ({ fd: 3, offset: 2 * i * PAGE, length: PAGE }));
  const kernel = (code: UdmabufErrorCode) => refusal(code, 'kernel');
  const check = (error: unknown, code: UdmabufErrorCode) => assert.ok(kernel(code)(error));

  check(explainUdmabufFailure(einval, context(pages(1025))), 'UDMABUF_LIST_LIMIT');
  check(
    explainUdmabufFailure(einval, context([{ fd: 3, offset: 0, length: 65 * MiB }])),
    'UDMABUF_SIZE_LIMIT',
  );
  check(
    explainUdmabufFailure(einval, context([{ fd: 3, offset: 512, length: PAGE }])),
    'UDMABUF_UNALIGNED',
  );
  check(
    explainUdmabufFailure(einval, context(pages(2), fakeQueries({ seals: { 3: 0 } }))),
    'UDMABUF_NOT_SEALED',
  );
  check(
    explainUdmabufFailure(
      einval,
      context(pages(2), fakeQueries({ seals: { 3: Seal.SHRINK | Seal.WRITE } })),
    ),
    'UDMABUF_WRITE_SEALED',
  );
  check(
    explainUdmabufFailure(einval, context(pages(2), fakeQueries({ sizes: { 3: PAGE } }))),
    'UDMABUF_BAD_RANGE',
  );
  check(
    explainUdmabufFailure(
      systemError('EBADFD'),
      context(pages(2), fakeQueries({ seals: { 3: 'EINVAL' } })),
    ),
    'UDMABUF_NOT_MEMFD',
  );
  check(explainUdmabufFailure(systemError('ENOTTY'), context(pages(2))), 'UDMABUF_UNAVAILABLE');
  const unexplained = explainUdmabufFailure(einval, context(pages(2)));
  check(unexplained, 'UDMABUF_FAILED');
  assert.ok(unexplained instanceof UdmabufFailedError);
  assert.equal(unexplained.errnoCode, 'EINVAL');
  assert.equal(unexplained.cause, einval);
  check(explainUdmabufFailure(systemError('ENOMEM'), context(pages(1025))), 'UDMABUF_FAILED');
  // A query that fails while explaining does not hide the original failure.
  const broken: MemfdQueries = {
    fileSize: () => {
      throw systemError('EBADF', 'lseek');
    },
    seals: () => Seal.SHRINK,
  };
  check(explainUdmabufFailure(einval, context(pages(2), broken)), 'UDMABUF_FAILED');
});

/** Fake device: hands out increasing fd numbers and records every close. */
function fakeSyscalls(options: { failWith?: string; queries?: MemfdQueries } = {}) {
  const open = new Set<number>();
  const closed: number[] = [];
  const calls: string[] = [];
  let next = 100;
  const queries = options.queries ?? fakeQueries();
  const issue = (name: string) => {
    calls.push(name);
    if (options.failWith) throw systemError(options.failWith);
    open.add(next);
    return next++;
  };
  const syscalls: UdmabufSyscalls = {
    ...queries,
    open: () => {
      open.add(next);
      return next++;
    },
    create: () => issue('create'),
    createList: () => issue('createList'),
    close: (fd) => {
      assert.ok(open.delete(fd), `fd ${fd} closed once, while open`);
      closed.push(fd);
    },
  };
  return { syscalls, open, closed, calls };
}

const pageList = (fdNumber: number, count: number, stride = 2) =>
  Array.from({ length: count }, (_, i) => ({
    fd: fdNumber,
    offset: stride * i * PAGE,
    length: PAGE,
  }));

test('the exporter caches one dma-buf per resource and generation and closes each fd once', () => {
  const fake = fakeSyscalls();
  const exporter = UdmabufExporter.open({
    syscalls: fake.syscalls,
    limits: { ...limits, sizeLimitMb: 64, assumed: [] },
    pageSize: PAGE,
  });
  const device = 100;
  const a1 = exporter.acquire(1, 0, pageList(3, 4));
  assert.deepEqual(a1, { fd: 101, size: 4 * PAGE, rangeCount: 4 });
  assert.equal(exporter.acquire(1, 0, pageList(3, 4)), a1, 'same generation: cached');
  assert.equal(exporter.peek(1, 0), a1);
  assert.equal(exporter.peek(1, 1), null);
  const b = exporter.acquire(2, 0, pageList(3, 8, 1));
  assert.equal(b.rangeCount, 1, 'contiguous pages became one range');
  assert.deepEqual(fake.calls, ['createList', 'create']);
  const a2 = exporter.acquire(1, 1, pageList(3, 2));
  assert.notEqual(a2.fd, a1.fd);
  assert.deepEqual(fake.closed, [a1.fd], 'the old generation was closed');
  assert.equal(exporter.cachedCount, 2);
  exporter.release(2);
  exporter.release(2);
  exporter.release(99);
  assert.deepEqual(fake.closed, [a1.fd, b.fd]);
  exporter.dispose();
  exporter.dispose();
  assert.deepEqual(fake.closed, [a1.fd, b.fd, a2.fd, device]);
  assert.equal(fake.open.size, 0);
  assert.equal(exporter.cachedCount, 0);
  assert.throws(() => exporter.acquire(3, 0, pageList(3, 1)), refusal('UDMABUF_UNAVAILABLE'));
  assert.throws(() => exporter.create(pageList(3, 1)), refusal('UDMABUF_UNAVAILABLE'));
});

test('a refused backing is not cached and the previous generation is gone', () => {
  const fake = fakeSyscalls();
  const exporter = UdmabufExporter.open({
    syscalls: fake.syscalls,
    limits: { ...limits, sizeLimitMb: 64, assumed: [] },
    pageSize: PAGE,
  });
  const first = exporter.acquire(7, 0, pageList(3, 2));
  assert.throws(() => exporter.acquire(7, 1, pageList(3, 1025)), refusal('UDMABUF_LIST_LIMIT'));
  assert.deepEqual(fake.closed, [first.fd]);
  assert.equal(exporter.cachedCount, 0);
  assert.throws(() => exporter.acquire(-1, 0, pageList(3, 1)), refusal('UDMABUF_BAD_RANGE'));
  exporter.dispose();
  assert.equal(fake.open.size, 0);
});

test('with prechecks off the kernel decides and its errno is mapped', () => {
  const fake = fakeSyscalls({ failWith: 'EINVAL' });
  const exporter = UdmabufExporter.open({
    syscalls: fake.syscalls,
    limits: { ...limits, sizeLimitMb: 64, assumed: [] },
    pageSize: PAGE,
  });
  assert.throws(
    () => exporter.create(pageList(3, 1025), { precheck: false }),
    refusal('UDMABUF_LIST_LIMIT', 'kernel'),
  );
  assert.deepEqual(fake.calls, ['createList']);
  assert.throws(
    () => exporter.create(pageList(3, 1025)),
    refusal('UDMABUF_LIST_LIMIT', 'precheck'),
  );
  assert.deepEqual(fake.calls, ['createList'], 'the precheck stopped it before the ioctl');
  exporter.dispose();
});

test('opening a missing device is UDMABUF_UNAVAILABLE', (t) => {
  assert.throws(
    () => UdmabufExporter.open({ devicePath: path.join(tmpdir(), 'guestfb-no-udmabuf') }),
    refusal('UDMABUF_UNAVAILABLE'),
  );
  if (existsSync('/dev/udmabuf')) {
    t.diagnostic('this host has /dev/udmabuf: the missing-device case used a temporary path');
  } else {
    assert.throws(() => UdmabufExporter.open(), refusal('UDMABUF_UNAVAILABLE'));
  }
});

test('seal and bounds checks on real memfds', () => {
  const queries = nativeUdmabufSyscalls;
  const make = (seals: number, sealable = true) => {
    const memfd = fd.memfdCreate('guestfb-dmabuf-test', sealable);
    fd.ftruncate(memfd, 4 * PAGE);
    if (seals) fd.addSeals(memfd, seals);
    return memfd;
  };
  const good = make(Seal.SHRINK | Seal.GROW);
  const unsealed = make(0);
  const writeSealed = make(Seal.SHRINK | Seal.WRITE);
  const unsealable = make(0, false);
  const dir = mkdtempSync(path.join(tmpdir(), 'guestfb-plain-'));
  writeFileSync(path.join(dir, 'file'), Buffer.alloc(PAGE));
  const plainFile = fd.udmabufOpen(path.join(dir, 'file')); // any O_RDWR open will do
  try {
    const one = (memfd: number, length = PAGE): MemfdRange[] => [{ fd: memfd, offset: 0, length }];
    assert.equal(plan(one(good), queries).totalBytes, PAGE);
    assert.throws(() => plan(one(good, 5 * PAGE), queries), refusal('UDMABUF_BAD_RANGE'));
    assert.throws(() => plan(one(unsealed), queries), refusal('UDMABUF_NOT_SEALED'));
    assert.throws(() => plan(one(writeSealed), queries), refusal('UDMABUF_WRITE_SEALED'));
    assert.throws(() => plan(one(unsealable), queries), refusal('UDMABUF_NOT_SEALED'));
    assert.throws(() => plan(one(plainFile), queries), refusal('UDMABUF_NOT_MEMFD'));
  } finally {
    for (const memfd of [good, unsealed, writeSealed, unsealable, plainFile]) fd.close(memfd);
    rmSync(dir, { recursive: true });
  }
});
