import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamageAccumulator } from '../../plugin/present/damage.js';

test('damage is clipped to the buffer and hostile rectangles are ignored', () => {
  const damage = new DamageAccumulator(100, 50);
  assert.equal(damage.add(-10, -10, 20, 20), true);
  assert.deepEqual(damage.toRects(), [{ x: 0, y: 0, width: 10, height: 10 }]);
  assert.equal(damage.add(90, 40, 1000, 1000), true);
  assert.deepEqual(damage.toRects()[1], { x: 90, y: 40, width: 10, height: 10 });
  for (const bad of [
    [0, 0, 0, 5],
    [0, 0, 5, -1],
    [100, 0, 5, 5],
    [0, 50, 5, 5],
    [-5, -5, 5, 5],
    [0.5, 0, 5, 5],
    [0, 0, Number.NaN, 5],
    [0, 0, Infinity, 5],
    [Number.MAX_SAFE_INTEGER, 0, Number.MAX_SAFE_INTEGER, 5],
  ]) {
    assert.equal(damage.add(bad[0], bad[1], bad[2], bad[3]), false, `rejects ${bad.join(',')}`);
  }
  assert.equal(damage.count, 2);
  // A huge rectangle starting before the buffer clips to the whole buffer.
  assert.equal(damage.add(-(2 ** 52), -(2 ** 52), 2 ** 53, 2 ** 53), true);
  assert.deepEqual(damage.toRects(), [{ x: 0, y: 0, width: 100, height: 50 }]);
});

test('covered rectangles are dropped and covering ones replace them', () => {
  const damage = new DamageAccumulator(100, 100);
  damage.add(10, 10, 10, 10);
  damage.add(12, 12, 2, 2); // inside the first
  assert.equal(damage.count, 1);
  damage.add(50, 50, 5, 5);
  damage.add(0, 0, 30, 30); // covers the first only
  assert.deepEqual(damage.toRects(), [
    { x: 50, y: 50, width: 5, height: 5 },
    { x: 0, y: 0, width: 30, height: 30 },
  ]);
});

test('overflowing the capacity collapses into the bounding box', () => {
  const damage = new DamageAccumulator(1000, 1000, 3);
  damage.add(0, 0, 1, 1);
  damage.add(10, 10, 1, 1);
  damage.add(20, 5, 1, 1);
  assert.equal(damage.count, 3);
  damage.add(100, 200, 10, 10);
  assert.deepEqual(damage.toRects(), [{ x: 0, y: 0, width: 110, height: 210 }]);
  damage.add(500, 500, 1, 1);
  assert.equal(damage.count, 2);
  assert.equal(damage.area(), 110 * 210 + 1);
});

test('addFull, clear and resize', () => {
  const damage = new DamageAccumulator(64, 32);
  damage.add(1, 1, 2, 2);
  damage.addFull();
  assert.deepEqual(damage.toRects(), [{ x: 0, y: 0, width: 64, height: 32 }]);
  damage.clear();
  assert.equal(damage.empty, true);
  damage.add(1, 1, 2, 2);
  damage.resize(16, 16);
  assert.equal(damage.empty, true);
  damage.add(10, 10, 100, 100);
  assert.deepEqual(damage.toRects(), [{ x: 10, y: 10, width: 6, height: 6 }]);
  assert.throws(() => damage.resize(0, 5), RangeError);
  assert.throws(() => new DamageAccumulator(5, 5, 0), RangeError);
});

test('merging many flushes stays within capacity and covers every input', () => {
  const damage = new DamageAccumulator(320, 200, 4);
  const inputs: [number, number, number, number][] = [];
  let seed = 7;
  const next = (limit: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % limit;
  };
  for (let i = 0; i < 200; i++) {
    const rect: [number, number, number, number] = [
      next(320),
      next(200),
      1 + next(40),
      1 + next(40),
    ];
    inputs.push(rect);
    damage.add(...rect);
    assert.ok(damage.count <= 4);
  }
  const rects = damage.toRects();
  for (const [x, y, w, h] of inputs) {
    const x1 = Math.min(320, x + w);
    const y1 = Math.min(200, y + h);
    // Every input pixel corner lies in some output rectangle.
    for (const [px, py] of [
      [x, y],
      [x1 - 1, y1 - 1],
    ]) {
      assert.ok(
        rects.some((r) => px >= r.x && px < r.x + r.width && py >= r.y && py < r.y + r.height),
        `pixel ${px},${py} is covered`,
      );
    }
  }
});
