import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Region, rect, subtractRect } from '../../examples/compositor/render/region.js';

function pixels(region: Region, width: number, height: number): string {
  let out = '';
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) out += region.containsPoint(x, y) ? '#' : '.';
    out += '\n';
  }
  return out;
}

test('union keeps rectangles disjoint and counts each pixel once', () => {
  const region = Region.of(rect(0, 0, 4, 4), rect(2, 2, 4, 4));
  assert.equal(region.area(), 16 + 16 - 4);
  for (const a of region.rectangles) {
    for (const b of region.rectangles) {
      if (a !== b)
        assert.equal(
          subtractRect(a, b).reduce((s, r) => s + r.width * r.height, 0),
          a.width * a.height,
        );
    }
  }
  assert.equal(
    pixels(region, 7, 7),
    '####...\n####...\n######.\n######.\n..####.\n..####.\n.......\n',
  );
  assert.deepEqual(region.extents(), { x: 0, y: 0, width: 6, height: 6 });
});

test('intersect and subtract', () => {
  const a = Region.of(rect(0, 0, 10, 10));
  const b = Region.of(rect(5, 5, 10, 10), rect(-5, -5, 7, 7));
  const both = a.intersect(b);
  assert.equal(both.area(), 25 + 4);
  a.subtract(rect(2, 2, 6, 6));
  assert.equal(a.area(), 100 - 36);
  assert.ok(!a.containsPoint(4, 4));
  assert.ok(a.containsPoint(1, 4));
  a.intersectRect(rect(0, 0, 2, 10));
  assert.equal(a.area(), 20);
});

test('empty and hostile rectangles', () => {
  assert.ok(Region.of(rect(5, 5, 0, 10), rect(5, 5, -3, 10)).isEmpty());
  const huge = Region.of(
    rect(-2147483648, -2147483648, 2147483647, 2147483647),
    rect(2147483647, 0, 2147483647, 1),
  );
  assert.equal(huge.rectangles.length, 1, 'a rectangle starting at the limit is empty');
  const clipped = huge.clone().intersectRect(rect(-10, -10, 100, 100));
  assert.deepEqual(clipped.rectangles, [{ x: -10, y: -10, width: 10, height: 10 }]);
});

test('simplify collapses many rectangles to the bounding box', () => {
  const region = new Region();
  for (let i = 0; i < 100; i++) region.add(rect(i * 2, 0, 1, 1));
  assert.equal(region.rectangles.length, 100);
  region.simplify(64);
  assert.deepEqual(region.rectangles, [{ x: 0, y: 0, width: 199, height: 1 }]);
});
