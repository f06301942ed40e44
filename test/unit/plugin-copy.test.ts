/**
 * The copy fallback against hostile backing: the copier maps only what the scanned-out
 * framebuffer reads (counted in /proc/self/maps, not only by the copier's own counter), stays
 * within max(MAX_MAPPINGS_PER_COPIER, fds) mappings however the pages are scattered, and still
 * copies every pixel exactly. And the per-device budget: LRU eviction, buffers on screen kept,
 * refusals naming the limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fd } from '../../native/fd.js';
import { DRM_FORMAT_MOD_LINEAR, DrmFormat } from '../../plugin/common/formats.js';
import { CopyBudget, DEFAULT_COPY_LIMITS, copyLimits } from '../../plugin/present/copy-budget.js';
import {
  DamageCopier,
  MAX_MAPPINGS_PER_COPIER,
  planCopyMappings,
} from '../../plugin/present/copy.js';
import {
  validateGuestBuffer,
  type BackingRange,
  type GuestBuffer,
} from '../../plugin/present/plan.js';

const PAGE = 4096;

/** Lines of /proc/self/maps that map a memfd named `name`. */
function mapsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(`/memfd:${name} `) || line.endsWith(`/memfd:${name}`)).length;
}

/** A pixel value that names its position (never 0, so an unwritten page shows up). */
function pixelAt(x: number, y: number): number {
  return (0x80000000 | (y << 16) | x) >>> 0;
}

/**
 * Writes the framebuffer's pixels through pwrite into wherever `ranges` put each byte, and
 * returns a function that checks a packed copy of it.
 */
function drawThroughRanges(buffer: GuestBuffer): (target: Buffer) => number {
  const spans: { range: BackingRange; start: number }[] = [];
  let start = 0;
  for (const range of buffer.ranges) {
    spans.push({ range, start });
    start += range.length;
  }
  const row = Buffer.alloc(buffer.width * 4);
  for (let y = 0; y < buffer.height; y++) {
    for (let x = 0; x < buffer.width; x++) row.writeUInt32LE(pixelAt(x, y), x * 4);
    let position = buffer.offset + y * buffer.stride;
    let written = 0;
    while (written < row.length) {
      const span = spans.findLast((s) => s.start <= position)!;
      const within = position - span.start;
      const chunk = Math.min(row.length - written, span.range.length - within);
      fd.pwrite(span.range.fd, row.subarray(written, written + chunk), span.range.offset + within);
      written += chunk;
      position += chunk;
    }
  }
  return (target) => {
    let differing = 0;
    for (let y = 0; y < buffer.height; y++) {
      for (let x = 0; x < buffer.width; x++) {
        if (target.readUInt32LE((y * buffer.width + x) * 4) !== pixelAt(x, y)) differing++;
      }
    }
    return differing;
  };
}

function framebuffer(fields: Partial<GuestBuffer> & Pick<GuestBuffer, 'ranges'>): GuestBuffer {
  return {
    width: 64,
    height: 16,
    stride: 256,
    offset: 0,
    format: DrmFormat.XRGB8888,
    modifier: DRM_FORMAT_MOD_LINEAR,
    ...fields,
  };
}

test('hostile backing: 16,384 scattered spans, a framebuffer that reads 16 of them, 1 mapping', () => {
  const baseline = fd.openFdCount();
  const name = 'guestfb-test-hostile-spans';
  const SPANS = 16384;
  // Every other page of a sparse 128 MiB memfd: no two spans coalesce.
  const memfd = fd.memfdCreate(name, true);
  try {
    fd.ftruncate(memfd, 2 * SPANS * PAGE);
    const ranges = Array.from({ length: SPANS }, (_, i) => ({
      fd: memfd,
      offset: 2 * i * PAGE,
      length: PAGE,
    }));
    // 16 rows, 2 pages apart (stride padding), starting at span 100: rows read spans
    // 100, 102, ..., 130, and only their first 256 bytes.
    const buffer = framebuffer({ ranges, offset: 100 * PAGE, stride: 2 * PAGE });
    assert.equal(validateGuestBuffer(buffer), null);
    const check = drawThroughRanges(buffer);

    const plan = planCopyMappings(buffer, 4);
    assert.equal(plan.spans.length, SPANS, 'nothing coalesces');
    const read = plan.spanMapping.filter((index) => index >= 0).length;
    assert.equal(read, 16, 'spans the rows read');
    assert.equal(plan.mappings.length, 1, 'close parts share one mapping');
    // From span 100's page to span 130's: fd pages 200..260.
    assert.equal(plan.mappedBytes, 61 * PAGE);

    const before = mapsOf(name);
    const copier = new DamageCopier(buffer, 4, plan);
    try {
      assert.equal(copier.mappingCount, 1);
      assert.equal(mapsOf(name) - before, 1, '/proc/self/maps: one new mapping of the memfd');
      const target = Buffer.alloc(copier.targetSize);
      assert.equal(copier.copyRect(target, 0, 0, 64, 16), 64 * 16 * 4);
      assert.equal(check(target), 0, 'every pixel exact');
    } finally {
      copier.close();
    }
    assert.equal(mapsOf(name), before, 'unmapped on close');
  } finally {
    fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('a framebuffer scattered further than the merge gap gets one window per fd', () => {
  const baseline = fd.openFdCount();
  const names = ['guestfb-test-far-a', 'guestfb-test-far-b'];
  const memfds = names.map((name) => fd.memfdCreate(name, true));
  try {
    // 320x320 XRGB packed = 100 pages, page i at 2 MiB * i, alternating between two memfds.
    const pages = 100;
    for (const memfd of memfds) fd.ftruncate(memfd, pages * 512 * PAGE);
    const ranges = Array.from({ length: pages }, (_, i) => ({
      fd: memfds[i % 2],
      offset: i * 512 * PAGE,
      length: PAGE,
    }));
    const buffer = framebuffer({ ranges, width: 320, height: 320, stride: 1280 });
    assert.equal(validateGuestBuffer(buffer), null);
    const check = drawThroughRanges(buffer);
    const plan = planCopyMappings(buffer, 4);
    assert.ok(pages > MAX_MAPPINGS_PER_COPIER, 'one mapping per page would be over the cap');
    assert.equal(plan.mappings.length, 2, 'more than the cap: one window per fd');

    const before = names.map(mapsOf);
    const copier = new DamageCopier(buffer, 4, plan);
    try {
      assert.deepEqual(
        names.map((name, i) => mapsOf(name) - before[i]),
        [1, 1],
      );
      const target = Buffer.alloc(copier.targetSize);
      copier.copyRect(target, 0, 0, 320, 320);
      assert.equal(check(target), 0, 'every pixel exact');
      // A damaged rect across page (and fd) boundaries reads the same bytes.
      const partial = Buffer.alloc(copier.targetSize);
      assert.equal(copier.copyRect(partial, 300, 10, 20, 50), 20 * 50 * 4);
      for (let y = 10; y < 60; y++) {
        for (let x = 300; x < 320; x++) {
          assert.equal(partial.readUInt32LE((y * 320 + x) * 4), pixelAt(x, y));
        }
      }
    } finally {
      copier.close();
    }
  } finally {
    for (const memfd of memfds) fd.close(memfd);
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('a scanout smaller than its resource maps only the scanned-out rows', () => {
  const memfd = fd.memfdCreate('guestfb-test-small-scanout', true);
  try {
    // A 4 MiB resource in one span; the scanout is 64x16 at byte 1 MiB + 128.
    fd.ftruncate(memfd, 4 << 20);
    const buffer = framebuffer({
      ranges: [{ fd: memfd, offset: 0, length: 4 << 20 }],
      offset: (1 << 20) + 128,
    });
    const check = drawThroughRanges(buffer);
    const plan = planCopyMappings(buffer, 4);
    assert.deepEqual(plan.mappings, [{ fd: memfd, offset: 1 << 20, length: 2 * PAGE }]);
    const copier = new DamageCopier(buffer, 4, plan);
    const target = Buffer.alloc(copier.targetSize);
    copier.copyRect(target, 0, 0, 64, 16);
    copier.close();
    assert.equal(check(target), 0);
  } finally {
    fd.close(memfd);
  }
});

/** A budget entry the test controls. */
function owned(budget: CopyBudget, bytes: number, mappings: number, shown = false) {
  const entry = {
    shown,
    evicted: false,
    owner: {
      inUse: () => entry.shown,
      evict: () => {
        entry.evicted = true;
        budget.untrack(entry);
      },
    },
  };
  budget.track(entry, bytes, mappings, entry.owner);
  return entry;
}

test('the copy budget evicts least recently shown buffers, never one on screen', () => {
  const totals = { copyBuffers: 0, copyBytes: 0, copyMappings: 0, copyEvictions: 0 };
  const budget = new CopyBudget({ maxBuffers: 3, maxBytes: 1000, maxMappings: 10 }, totals);
  const a = owned(budget, 100, 1, true);
  const b = owned(budget, 100, 1);
  const c = owned(budget, 100, 1);
  assert.deepEqual(totals, { copyBuffers: 3, copyBytes: 300, copyMappings: 3, copyEvictions: 0 });
  budget.touch(b);
  // Count limit: c is the least recently used buffer not on screen (a is shown).
  assert.equal(budget.admit(100, 1), null);
  assert.deepEqual([a.evicted, b.evicted, c.evicted], [false, false, true]);
  const d = owned(budget, 100, 1);
  // Bytes limit: 850 more bytes need b and d gone; a stays (shown).
  assert.equal(budget.admit(850, 1), null);
  assert.deepEqual([a.evicted, b.evicted, d.evicted], [false, true, true]);
  assert.equal(totals.copyEvictions, 3);
  owned(budget, 850, 1, true);
  // Everything left is on screen: refused, naming the limits.
  assert.match(budget.admit(100, 1) ?? '', /on screen hold the budget .*950 of maxBytes 1000/);
  // Mappings limit, and single buffers over a limit.
  assert.match(budget.admit(1, 11) ?? '', /11 mappings is over maxMappings 10/);
  assert.match(budget.admit(1001, 1) ?? '', /1001 bytes is over maxBytes 1000/);
  budget.untrack(a);
  assert.equal(budget.count, 1);
  assert.equal(totals.copyBytes, 850);
});

test('copy limits: defaults and validation', () => {
  assert.deepEqual(copyLimits(), { ...DEFAULT_COPY_LIMITS });
  assert.deepEqual(DEFAULT_COPY_LIMITS, {
    maxBuffers: 16,
    maxBytes: 512 * 1024 * 1024,
    maxMappings: 1024,
  });
  assert.equal(copyLimits({ maxBuffers: 2 }).maxBuffers, 2);
  assert.throws(() => copyLimits({ maxBytes: 0 }), /maxBytes must be a positive integer, got 0/);
  assert.throws(() => copyLimits({ maxMappings: 1.5 }), /maxMappings/);
});
