import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  OutputImage,
  composeRegion,
  type RenderBuffer,
  type SceneLayer,
} from '../../examples/compositor/render/compose.js';
import { Region, rect } from '../../examples/compositor/render/region.js';
import {
  Transform,
  bufferRectToSurface,
  surfaceSize,
  type BufferGeometry,
} from '../../examples/compositor/render/transform.js';
import { Fourcc } from '../../examples/compositor/dmabuf/formats.js';
import {
  ScreenshotWriter,
  decodePng,
  encodePng,
  screenshotFileName,
} from '../../examples/compositor/render/screenshot.js';

/** An in-memory XRGB8888 buffer whose pixels are given as 0xRRGGBB rows. */
function memoryBuffer(
  rows: number[][],
  format: number = Fourcc.XRGB8888,
): RenderBuffer & { reads: number } {
  const height = rows.length;
  const width = rows[0].length;
  const stride = width * 4 + 8; // padded rows: stride is honoured
  const bytes = new Uint8Array(stride * height);
  rows.forEach((row, y) =>
    row.forEach((color, x) => {
      const i = y * stride + x * 4;
      bytes[i] = color & 0xff;
      bytes[i + 1] = (color >> 8) & 0xff;
      bytes[i + 2] = (color >> 16) & 0xff;
      bytes[i + 3] = (color >>> 24) & 0xff;
    }),
  );
  const buffer = {
    width,
    height,
    format,
    reads: 0,
    beginRead: () => {
      buffer.reads++;
      return [{ bytes, offset: 0, stride }];
    },
    endRead: () => {},
  };
  return buffer;
}

function render(layers: SceneLayer[], width: number, height: number, background = 0): OutputImage {
  const image = new OutputImage(width, height);
  composeRegion(image, layers, Region.of(rect(0, 0, width, height)), background);
  return image;
}

function readBack(
  image: OutputImage,
  x0: number,
  y0: number,
  width: number,
  height: number,
): number[][] {
  const rows: number[][] = [];
  for (let y = y0; y < y0 + height; y++) {
    const row: number[] = [];
    for (let x = x0; x < x0 + width; x++) row.push(image.pixel(x, y));
    rows.push(row);
  }
  return rows;
}

// Buffer pixels 1..6 (as distinct colours), 3 wide and 2 tall.
const c = (n: number) => n * 0x10101;
const base = [
  [c(1), c(2), c(3)],
  [c(4), c(5), c(6)],
];

test('all eight buffer transforms show the buffer as the compositor must undo them', () => {
  // Expected on-screen images: the inverse of the client's transform, as weston applies it.
  const expected: Record<number, number[][]> = {
    [Transform.NORMAL]: [
      [1, 2, 3],
      [4, 5, 6],
    ],
    [Transform.ROTATE_90]: [
      [4, 1],
      [5, 2],
      [6, 3],
    ],
    [Transform.ROTATE_180]: [
      [6, 5, 4],
      [3, 2, 1],
    ],
    [Transform.ROTATE_270]: [
      [3, 6],
      [2, 5],
      [1, 4],
    ],
    [Transform.FLIPPED]: [
      [3, 2, 1],
      [6, 5, 4],
    ],
    [Transform.FLIPPED_90]: [
      [1, 4],
      [2, 5],
      [3, 6],
    ],
    [Transform.FLIPPED_180]: [
      [4, 5, 6],
      [1, 2, 3],
    ],
    [Transform.FLIPPED_270]: [
      [6, 3],
      [5, 2],
      [4, 1],
    ],
  };
  for (const [transform, rows] of Object.entries(expected)) {
    const buffer = memoryBuffer(base);
    const geometry: BufferGeometry = {
      bufferWidth: 3,
      bufferHeight: 2,
      scale: 1,
      transform: Number(transform),
    };
    const size = surfaceSize(geometry);
    assert.deepEqual([size.width, size.height], [rows[0].length, rows.length]);
    const image = render([{ buffer, x: 1, y: 1, geometry }], 6, 6);
    assert.deepEqual(
      readBack(image, 1, 1, size.width, size.height),
      rows.map((row) => row.map(c)),
      `transform ${transform}`,
    );
    assert.equal(image.pixel(0, 0), 0, 'background outside the surface');
  }
});

test('buffer_scale 2 halves the surface and samples every other pixel', () => {
  const rows = [0, 1, 2, 3].map((y) => [0, 1, 2, 3].map((x) => c(y * 4 + x)));
  const geometry: BufferGeometry = { bufferWidth: 4, bufferHeight: 4, scale: 2, transform: 0 };
  assert.deepEqual(surfaceSize(geometry), { width: 2, height: 2 });
  const image = render([{ buffer: memoryBuffer(rows), x: 0, y: 0, geometry }], 3, 3);
  // Nearest sample at surface pixel centre (0.5, 0.5) -> buffer (1, 1).
  assert.deepEqual(readBack(image, 0, 0, 2, 2), [
    [c(5), c(7)],
    [c(13), c(15)],
  ]);
});

test('viewport source crop and destination scaling', () => {
  const rows = [0, 1, 2, 3].map((y) => [0, 1, 2, 3].map((x) => c(y * 4 + x)));
  const geometry: BufferGeometry = {
    bufferWidth: 4,
    bufferHeight: 4,
    scale: 1,
    transform: 0,
    viewport: { source: { x: 1, y: 1, width: 2, height: 2 }, destination: { width: 4, height: 4 } },
  };
  assert.deepEqual(surfaceSize(geometry), { width: 4, height: 4 });
  const image = render([{ buffer: memoryBuffer(rows), x: 0, y: 0, geometry }], 4, 4);
  assert.deepEqual(readBack(image, 0, 0, 4, 4), [
    [c(5), c(5), c(6), c(6)],
    [c(5), c(5), c(6), c(6)],
    [c(9), c(9), c(10), c(10)],
    [c(9), c(9), c(10), c(10)],
  ]);
});

test('only damaged output pixels are recomposed', () => {
  const image = new OutputImage(8, 8);
  const buffer = memoryBuffer(Array.from({ length: 8 }, () => new Array(8).fill(0xff0000)));
  const layer: SceneLayer = {
    buffer,
    x: 0,
    y: 0,
    geometry: { bufferWidth: 8, bufferHeight: 8, scale: 1, transform: 0 },
  };
  composeRegion(image, [], Region.of(rect(0, 0, 8, 8)), 0x0000ff);
  const stats = composeRegion(image, [layer], Region.of(rect(2, 2, 2, 3)), 0x0000ff);
  assert.equal(stats.pixels, 6);
  assert.equal(image.pixel(2, 2), 0xff0000);
  assert.equal(image.pixel(3, 4), 0xff0000);
  assert.equal(image.pixel(4, 4), 0x0000ff, 'outside the damage the old frame stays');
  assert.equal(image.pixel(2, 5), 0x0000ff);
  const none = composeRegion(image, [layer], new Region(), 0);
  assert.equal(none.pixels, 0);
  assert.equal(buffer.reads, 1, 'no damage, no buffer read');
});

test('premultiplied alpha blends over lower surfaces; stacking order holds', () => {
  const under = memoryBuffer([[0x00ff00, 0x00ff00]]);
  // 50% white premultiplied = 0x80808080; fully transparent; fully opaque blue.
  const over = memoryBuffer([[0x80808080, 0x00000000]], Fourcc.ARGB8888);
  const g: BufferGeometry = { bufferWidth: 2, bufferHeight: 1, scale: 1, transform: 0 };
  const image = render(
    [
      { buffer: under, x: 0, y: 0, geometry: g },
      { buffer: over, x: 0, y: 0, geometry: g },
    ],
    2,
    1,
  );
  // 0x80 + 0x00 * 127/255, 0x80 + 0xff * 127/255, 0x80 + 0x00 * 127/255
  assert.equal(image.pixel(0, 0), 0x80ff80);
  assert.equal(image.pixel(1, 0), 0x00ff00);
});

test('RGB565, XBGR8888 and NV12 decode to the right colours', () => {
  const g: BufferGeometry = { bufferWidth: 2, bufferHeight: 2, scale: 1, transform: 0 };
  // RGB565: 0xf800 red, 0x07e0 green, 0x001f blue, 0xffff white.
  const rgb565 = new Uint8Array([0x00, 0xf8, 0xe0, 0x07, 0x1f, 0x00, 0xff, 0xff]);
  const planes565 = [{ bytes: rgb565, offset: 0, stride: 4 }];
  const b565: RenderBuffer = {
    width: 2,
    height: 2,
    format: Fourcc.RGB565,
    beginRead: () => planes565,
    endRead: () => {},
  };
  assert.deepEqual(
    readBack(render([{ buffer: b565, x: 0, y: 0, geometry: g }], 2, 2), 0, 0, 2, 2),
    [
      [0xff0000, 0x00ff00],
      [0x0000ff, 0xffffff],
    ],
  );
  // XBGR8888: bytes R, G, B, X.
  const xbgr = new Uint8Array([0x11, 0x22, 0x33, 0, 0x44, 0x55, 0x66, 0, 1, 2, 3, 0, 4, 5, 6, 0]);
  const bx: RenderBuffer = {
    width: 2,
    height: 2,
    format: Fourcc.XBGR8888,
    beginRead: () => [{ bytes: xbgr, offset: 0, stride: 8 }],
    endRead: () => {},
  };
  assert.deepEqual(readBack(render([{ buffer: bx, x: 0, y: 0, geometry: g }], 2, 2), 0, 0, 2, 1), [
    [0x112233, 0x445566],
  ]);
  // NV12 limited range: Y=235, Cb=Cr=128 is white; Y=16 is black; Y=81 Cb=90 Cr=240 is ~red.
  const y = new Uint8Array([235, 16, 81, 81]);
  const uv = new Uint8Array([128, 128]);
  const nv: RenderBuffer = {
    width: 2,
    height: 2,
    format: Fourcc.NV12,
    beginRead: () => [
      { bytes: y, offset: 0, stride: 2 },
      { bytes: uv, offset: 0, stride: 2 },
    ],
    endRead: () => {},
  };
  const image = render([{ buffer: nv, x: 0, y: 0, geometry: g }], 2, 2);
  assert.equal(image.pixel(0, 0), 0xffffff);
  assert.equal(image.pixel(1, 0), 0x000000);
  const grey = image.pixel(0, 1);
  assert.ok(Math.abs((grey >> 16) - 76) <= 1 && (grey & 0xff) === grey >> 16, grey.toString(16));
});

test('a buffer that cannot be read is skipped, not drawn from stale memory', () => {
  const broken: RenderBuffer = {
    width: 2,
    height: 2,
    format: Fourcc.XRGB8888,
    beginRead: () => null,
    endRead: () => {},
  };
  const image = new OutputImage(2, 2);
  const stats = composeRegion(
    image,
    [
      {
        buffer: broken,
        x: 0,
        y: 0,
        geometry: { bufferWidth: 2, bufferHeight: 2, scale: 1, transform: 0 },
      },
    ],
    Region.of(rect(0, 0, 2, 2)),
    0x123456,
  );
  assert.equal(stats.skippedLayers, 1);
  assert.equal(image.pixel(1, 1), 0x123456);
});

test('damage_buffer rectangles map back to surface coordinates', () => {
  const g: BufferGeometry = {
    bufferWidth: 200,
    bufferHeight: 100,
    scale: 2,
    transform: Transform.ROTATE_90,
  };
  // Surface is 50x100; buffer column 0..9 (x) rows 0..99 -> surface top rows, right side.
  assert.deepEqual(bufferRectToSurface(g, rect(0, 0, 10, 100)), {
    x: 0,
    y: 0,
    width: 50,
    height: 5,
  });
});

test('PNG screenshots round-trip pixels and are named <output>-<sequence>.png', () => {
  const image = render(
    [
      {
        buffer: memoryBuffer(base),
        x: 0,
        y: 0,
        geometry: { bufferWidth: 3, bufferHeight: 2, scale: 1, transform: 0 },
      },
    ],
    4,
    3,
    0xabcdef,
  );
  const decoded = decodePng(encodePng(image));
  assert.equal(decoded.width, 4);
  assert.equal(decoded.pixel(2, 1), c(6));
  assert.equal(decoded.pixel(3, 2), 0xabcdef);
  assert.equal(screenshotFileName('HEADLESS-1', 7), 'HEADLESS-1-000007.png');
  assert.equal(screenshotFileName('../evil/name', 1), '__evil_name-000001.png');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-shots-'));
  try {
    const writer = new ScreenshotWriter(dir);
    writer.write('out', encodePng(image));
    const second = writer.write('out', encodePng(image));
    assert.deepEqual(readdirSync(dir).sort(), ['out-000001.png', 'out-000002.png']);
    assert.equal(decodePng(readFileSync(second)).pixel(0, 0), c(1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
