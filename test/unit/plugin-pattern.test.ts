import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PAGE_SIZE,
  backgroundPixel,
  boxColor,
  boxPosition,
  boxSize,
  layoutPages,
  patternPixel,
} from '../../plugin/sources/pattern.js';
import { coalesceRanges } from '../../plugin/present/plan.js';

test('the pattern is deterministic and the box moves inside the frame', () => {
  const [w, h] = [320, 200];
  assert.equal(boxSize(w, h), 25);
  for (let frame = 0; frame < 500; frame++) {
    const [x, y] = boxPosition(frame, w, h);
    assert.ok(x >= 0 && x + 25 <= w && y >= 0 && y + 25 <= h, `frame ${frame}: ${x},${y}`);
  }
  assert.notDeepEqual(boxPosition(1, w, h), boxPosition(2, w, h));
  const [bx, by] = boxPosition(3, w, h);
  assert.equal(patternPixel(bx, by, 3, w, h), boxColor(3));
  assert.equal(patternPixel(bx + 25, by, 3, w, h), backgroundPixel(bx + 25, by, w, h));
  assert.equal(backgroundPixel(0, 0, w, h), 0xff000040);
  assert.equal(backgroundPixel(w - 1, h - 1, w, h) >>> 16, 0xffff);
  // Values worked out by hand from the documented ramps, so a changed formula fails here.
  // Frame 42: x = 42*7 = 294 (inside 0..295), y = 42*5 = 210 bounces back from 175 to 140.
  assert.deepEqual(boxPosition(42, w, h), [294, 140]);
  // red (42*37) & 0xff = 0x12, blue 255 - ((42*53) & 0xff) = 0x4d.
  assert.equal(patternPixel(300, 150, 42, w, h), 0xff12ff4d);
  // Background at (17, 9): red floor(17*255/319) = 13, green floor(9*255/199) = 11, odd checker.
  assert.equal(patternPixel(17, 9, 42, w, h), 0xff0d0bc0);
  // Just left of the box: red floor(293*255/319) = 234, green floor(150*255/199) = 192.
  assert.equal(patternPixel(293, 150, 42, w, h), 0xffeac0c0);
});

test('a scattered layout shuffles page runs that coalescing can merge', () => {
  const framebufferPages = 2025; // 1920x1080 XRGB
  const layout = layoutPages(framebufferPages, 'scattered', 1);
  assert.equal(layout.pages.length, framebufferPages);
  // Every framebuffer page has its own guest page, inside guest RAM.
  assert.equal(new Set(layout.pages).size, framebufferPages);
  assert.ok(Math.max(...layout.pages) < layout.totalPages);
  // The ranges describe exactly those pages, in framebuffer order.
  const described: number[] = [];
  for (const range of layout.ranges) {
    assert.equal(range.offset % PAGE_SIZE, 0);
    assert.equal(range.size % PAGE_SIZE, 0);
    for (let i = 0; i < range.size / PAGE_SIZE; i++) described.push(range.offset / PAGE_SIZE + i);
  }
  assert.deepEqual(described, [...layout.pages]);
  // Not in order, and coalescing shrinks the list below udmabuf's default list_limit (1024).
  assert.ok(layout.pages.some((page, i) => i > 0 && page < layout.pages[i - 1]));
  const spans = coalesceRanges(
    layout.ranges.map((r) => ({ fd: 3, offset: r.offset, length: r.size })),
  );
  assert.ok(layout.ranges.length > spans.length, 'some ranges coalesce');
  assert.ok(spans.length > 1 && spans.length <= 1024, `${spans.length} spans`);
  // Same seed, same layout.
  assert.deepEqual(layoutPages(framebufferPages, 'scattered', 1).pages, layout.pages);
  assert.notDeepEqual(layoutPages(framebufferPages, 'scattered', 2).pages, layout.pages);
});

test('a contiguous layout is one span', () => {
  const layout = layoutPages(10, 'contiguous');
  assert.equal(layout.ranges.length, 1);
  assert.deepEqual([...layout.pages], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.ok(layout.totalPages >= 13);
});
