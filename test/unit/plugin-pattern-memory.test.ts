import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd, Seal } from '../../native/fd.js';
import { DamageCopier } from '../../plugin/present/copy.js';
import { coalesceRanges, validateGuestBuffer } from '../../plugin/present/plan.js';
import {
  PAGE_SIZE,
  PatternGuest,
  PatternSource,
  patternPixel,
} from '../../plugin/sources/pattern.js';

const [W, H] = [320, 200];

/** Reads the framebuffer back through the memfd (pread), following the page layout. */
function readFramebuffer(guest: PatternGuest): Uint32Array {
  const bytes = new Uint8Array(guest.stride * guest.height);
  const page = new Uint8Array(PAGE_SIZE);
  for (let i = 0; i < guest.layout.pages.length; i++) {
    assert.equal(fd.pread(guest.memfd, page, guest.layout.pages[i] * PAGE_SIZE), PAGE_SIZE);
    const start = i * PAGE_SIZE;
    bytes.set(page.subarray(0, Math.min(PAGE_SIZE, bytes.length - start)), start);
  }
  return new Uint32Array(bytes.buffer);
}

function assertPattern(pixels: Uint32Array, frame: number, stride = W): void {
  let mismatches = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (pixels[y * stride + x] !== patternPixel(x, y, frame, W, H)) mismatches++;
    }
  }
  assert.equal(mismatches, 0, `frame ${frame}: ${mismatches} pixels differ`);
}

test('the pattern guest draws into scattered pages of a sealed memfd', () => {
  const baseline = fd.openFdCount();
  const guest = new PatternGuest({ width: W, height: H, layout: 'scattered', seed: 3 });
  try {
    const seals = fd.getSeals(guest.memfd);
    assert.ok(seals & Seal.SHRINK, 'F_SEAL_SHRINK');
    assert.equal(seals & Seal.WRITE, 0, 'no F_SEAL_WRITE (udmabuf refuses it)');
    assert.equal(fd.fdSize(guest.memfd), guest.layout.totalPages * PAGE_SIZE);
    guest.drawFrame(9);
    assertPattern(readFramebuffer(guest), 9);
    const buffer = guest.buffer();
    assert.equal(validateGuestBuffer(buffer), null);
    assert.ok(coalesceRanges(buffer.ranges).length > 1, 'scattered');
  } finally {
    guest.close();
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('the copier copies damaged rects out of scattered pages, and only those', () => {
  const baseline = fd.openFdCount();
  const guest = new PatternGuest({ width: W, height: H, layout: 'scattered' });
  const copier = new DamageCopier(guest.buffer(), 4);
  try {
    guest.drawFrame(1);
    const target = Buffer.alloc(copier.targetSize);
    assert.equal(copier.copyRect(target, 0, 0, W, H), W * H * 4);
    assertPattern(new Uint32Array(target.buffer, target.byteOffset, W * H), 1);
    guest.drawFrame(2);
    // Copy only a rect that straddles page boundaries; outside it frame 1 stays.
    const [rx, ry, rw, rh] = [250, 10, 70, 33];
    assert.equal(copier.copyRect(target, rx, ry, rw, rh), rw * rh * 4);
    const pixels = new Uint32Array(target.buffer, target.byteOffset, W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const inside = x >= rx && x < rx + rw && y >= ry && y < ry + rh;
        const expected = patternPixel(x, y, inside ? 2 : 1, W, H);
        if (pixels[y * W + x] !== expected) assert.fail(`pixel ${x},${y}`);
      }
    }
  } finally {
    copier.close();
    guest.close();
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('the pattern source flushes the old and new box and reads pixels back', () => {
  const baseline = fd.openFdCount();
  const source = new PatternSource({ width: W, height: H, rate: 0 });
  try {
    assert.equal(source.heads().length, 1);
    const scanout = source.scanout(0);
    assert.ok(scanout);
    assert.equal(
      source.resource(scanout.resourceId)?.backing.length,
      source.guest.buffer().ranges.length,
    );
    const flushes: { x: number; y: number; width: number; height: number }[][] = [];
    source.on('flush', (headId, damage) => {
      assert.equal(headId, 0);
      flushes.push(damage.map((r) => ({ ...r })));
    });
    source.step();
    source.step();
    assert.equal(flushes.length, 2);
    assert.equal(source.frame, 2);
    assertPattern(readFramebuffer(source.guest), 2);
    source.showFrame(40);
    assert.deepEqual(flushes[2], [{ x: 0, y: 0, width: W, height: H }]);
    assertPattern(readFramebuffer(source.guest), 40);
    const target = new Uint8Array(4 * 4 * 2);
    assert.equal(source.readPixels(1, { x: 10, y: 20, width: 4, height: 2 }, target), true);
    assert.equal(new DataView(target.buffer).getUint32(4, true), patternPixel(11, 20, 40, W, H));
    assert.equal(source.readPixels(1, { x: W - 1, y: 0, width: 2, height: 1 }, target), false);
    assert.equal(source.readPixels(2, { x: 0, y: 0, width: 1, height: 1 }, target), false);
  } finally {
    source.close();
  }
  assert.equal(source.heads().length, 0);
  assert.equal(fd.openFdCount(), baseline);
});
