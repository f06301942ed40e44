/**
 * The software renderer: composes stacked surfaces into an XRGB8888 output image, recomposing
 * only the damaged part of the output, with nearest sampling through each surface's
 * surface-to-buffer matrix (viewport, scale, transform, y-invert).
 */
import { Fourcc } from '../dmabuf/formats.js';
import { pixelReader, type PlaneView } from './pixels.js';
import { Region, intersectRects, isEmptyRect, type Rect } from './region.js';
import { surfaceSize, surfaceToBufferMatrix, type BufferGeometry } from './transform.js';

/** A client buffer the renderer can read. */
export interface RenderBuffer {
  readonly width: number;
  readonly height: number;
  /** DRM fourcc. */
  readonly format: number;
  readonly yInvert?: boolean;
  /** Starts a read (maps, syncs); null when the buffer cannot be read now. */
  beginRead(): PlaneView[] | null;
  /** Ends the read started by beginRead (dma-buf sync end). */
  endRead(): void;
}

/** One surface to draw, in output coordinates, bottom to top. */
export interface SceneLayer {
  buffer: RenderBuffer;
  /** Output position of the surface's top-left corner. */
  x: number;
  y: number;
  /** Scale, transform and viewport; bufferWidth/Height must match the buffer. */
  geometry: BufferGeometry;
}

/** The rectangle a layer covers on the output. */
export function layerBounds(layer: SceneLayer): Rect {
  const size = surfaceSize(layer.geometry);
  return { x: layer.x, y: layer.y, width: size.width, height: size.height };
}

/** An XRGB8888 image (little-endian B, G, R, X bytes; X is undefined, as the format says). */
export class OutputImage {
  readonly pixels: Uint8Array;
  readonly words: Uint32Array;
  readonly stride: number;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new RangeError(`invalid output size ${width}x${height}`);
    }
    this.stride = width * 4;
    this.words = new Uint32Array(width * height);
    this.pixels = new Uint8Array(this.words.buffer);
  }

  /** 0xRRGGBB at (x, y). */
  pixel(x: number, y: number): number {
    return this.words[y * this.width + x] & 0xffffff;
  }

  fill(r: Rect, color: number): void {
    const word = (0xff000000 | color) >>> 0;
    for (let y = r.y; y < r.y + r.height; y++) {
      this.words.fill(word, y * this.width + r.x, y * this.width + r.x + r.width);
    }
  }
}

export interface ComposeStats {
  /** Output pixels recomposed. */
  pixels: number;
  /** Layers that were unreadable and skipped. */
  skippedLayers: number;
}

/**
 * Recomposes `damage` (output coordinates) of `image` from `background` (0xRRGGBB) and `layers`.
 */
export function composeRegion(
  image: OutputImage,
  layers: readonly SceneLayer[],
  damage: Region,
  background: number,
): ComposeStats {
  const clip = damage
    .clone()
    .intersectRect({ x: 0, y: 0, width: image.width, height: image.height });
  const stats: ComposeStats = { pixels: clip.area(), skippedLayers: 0 };
  if (clip.isEmpty()) return stats;
  for (const r of clip.rectangles) image.fill(r, background);

  for (const layer of layers) {
    const bounds = layerBounds(layer);
    const pieces = clip.rectangles
      .map((r) => intersectRects(r, bounds))
      .filter((r) => !isEmptyRect(r));
    if (pieces.length === 0) continue;
    const planes = layer.buffer.beginRead();
    if (!planes) {
      stats.skippedLayers++;
      continue;
    }
    try {
      const reader = pixelReader(layer.buffer.format, planes);
      if (!reader) {
        stats.skippedLayers++;
        continue;
      }
      const geometry = { ...layer.geometry, yInvert: layer.buffer.yInvert ?? false };
      const m = Array.from(surfaceToBufferMatrix(geometry));
      for (const piece of pieces) {
        if (copyPiece(image, layer, piece, m, planes)) continue;
        const layout = BYTE_LAYOUTS.get(layer.buffer.format);
        if (layout) drawPiece32(image, layer, piece, m, planes[0], layout);
        else drawPiece(image, layer, piece, m, reader);
      }
    } finally {
      layer.buffer.endRead();
    }
  }
  return stats;
}

/**
 * Fast path for the common case: an XRGB8888 buffer shown 1:1 (no scale, transform or viewport,
 * whole pixels inside the buffer) is copied row by row. False when the case does not apply.
 * The copied X byte is left as the client wrote it: it carries no meaning in XRGB8888.
 */
function copyPiece(
  image: OutputImage,
  layer: SceneLayer,
  piece: Rect,
  m: number[],
  planes: PlaneView[],
): boolean {
  if (layer.buffer.format !== Fourcc.XRGB8888) return false;
  const [m0, m1, , m3, m4, , m6, m7] = m;
  if (m0 !== 1 || m1 !== 0 || m3 !== 0 || m4 !== 1) return false;
  if (!Number.isInteger(m6) || !Number.isInteger(m7)) return false;
  const bx = piece.x - layer.x + m6;
  const by = piece.y - layer.y + m7;
  if (bx < 0 || by < 0 || bx + piece.width > layer.buffer.width) return false;
  if (by + piece.height > layer.buffer.height) return false;
  const [plane] = planes;
  const rowBytes = piece.width * 4;
  const last = plane.offset + (by + piece.height - 1) * plane.stride + bx * 4 + rowBytes;
  if (last > plane.bytes.byteLength) return false;
  for (let row = 0; row < piece.height; row++) {
    const from = plane.offset + (by + row) * plane.stride + bx * 4;
    image.pixels.set(
      plane.bytes.subarray(from, from + rowBytes),
      ((piece.y + row) * image.width + piece.x) * 4,
    );
  }
  return true;
}

/** round(value * factor / 255) for bytes, in integer arithmetic. */
function scale255(value: number, factor: number): number {
  const t = value * factor + 128;
  return (t + (t >> 8)) >> 8;
}

/** Byte positions of red, green, blue and alpha (-1: opaque) in the 32-bit formats. */
interface ByteLayout {
  r: number;
  g: number;
  b: number;
  a: number;
}

const BYTE_LAYOUTS: ReadonlyMap<number, ByteLayout> = new Map([
  [Fourcc.XRGB8888, { r: 2, g: 1, b: 0, a: -1 }],
  [Fourcc.ARGB8888, { r: 2, g: 1, b: 0, a: 3 }],
  [Fourcc.XBGR8888, { r: 0, g: 1, b: 2, a: -1 }],
  [Fourcc.ABGR8888, { r: 0, g: 1, b: 2, a: 3 }],
]);

/** The general path for the 32-bit formats, decoding inline (one monomorphic loop for all four;
 * a per-format reader closure here makes the call site megamorphic and several times slower). */
function drawPiece32(
  image: OutputImage,
  layer: SceneLayer,
  piece: Rect,
  m: number[],
  plane: PlaneView,
  layout: ByteLayout,
): void {
  const maxX = layer.buffer.width - 1;
  const maxY = layer.buffer.height - 1;
  const words = image.words;
  const bytes = plane.bytes;
  const { offset, stride } = plane;
  const { r: ri, g: gi, b: bi, a: ai } = layout;
  const [m0, m1, , m3, m4, , m6, m7] = m;
  for (let oy = piece.y; oy < piece.y + piece.height; oy++) {
    const sx = piece.x - layer.x + 0.5;
    const sy = oy - layer.y + 0.5;
    let fx = m0 * sx + m3 * sy + m6;
    let fy = m1 * sx + m4 * sy + m7;
    let index = oy * image.width + piece.x;
    for (let ox = 0; ox < piece.width; ox++, index++, fx += m0, fy += m1) {
      let bx = Math.floor(fx);
      let by = Math.floor(fy);
      bx = bx < 0 ? 0 : bx > maxX ? maxX : bx;
      by = by < 0 ? 0 : by > maxY ? maxY : by;
      const i = offset + by * stride + bx * 4;
      const alpha = ai < 0 ? 0xff : bytes[i + ai];
      if (alpha === 0xff) {
        words[index] =
          (0xff000000 | (bytes[i + ri] << 16) | (bytes[i + gi] << 8) | bytes[i + bi]) >>> 0;
      } else if (alpha !== 0) {
        const destination = words[index];
        const inverse = 255 - alpha;
        const r = bytes[i + ri] + scale255((destination >>> 16) & 0xff, inverse);
        const g = bytes[i + gi] + scale255((destination >>> 8) & 0xff, inverse);
        const b = bytes[i + bi] + scale255(destination & 0xff, inverse);
        words[index] =
          (0xff000000 | (Math.min(r, 255) << 16) | (Math.min(g, 255) << 8) | Math.min(b, 255)) >>>
          0;
      }
    }
  }
}

function drawPiece(
  image: OutputImage,
  layer: SceneLayer,
  piece: Rect,
  m: number[],
  read: (x: number, y: number) => number,
): void {
  const maxX = layer.buffer.width - 1;
  const maxY = layer.buffer.height - 1;
  const words = image.words;
  const [m0, m1, , m3, m4, , m6, m7] = m;
  for (let oy = piece.y; oy < piece.y + piece.height; oy++) {
    // Sample at pixel centres in surface-local coordinates.
    const sx = piece.x - layer.x + 0.5;
    const sy = oy - layer.y + 0.5;
    let fx = m0 * sx + m3 * sy + m6;
    let fy = m1 * sx + m4 * sy + m7;
    let index = oy * image.width + piece.x;
    for (let ox = 0; ox < piece.width; ox++, index++, fx += m0, fy += m1) {
      let bx = Math.floor(fx);
      let by = Math.floor(fy);
      bx = bx < 0 ? 0 : bx > maxX ? maxX : bx;
      by = by < 0 ? 0 : by > maxY ? maxY : by;
      const source = read(bx, by);
      const alpha = source >>> 24;
      if (alpha === 0xff) {
        words[index] = source;
      } else if (alpha !== 0) {
        const destination = words[index];
        const inverse = 255 - alpha;
        const r = ((source >>> 16) & 0xff) + scale255((destination >>> 16) & 0xff, inverse);
        const g = ((source >>> 8) & 0xff) + scale255((destination >>> 8) & 0xff, inverse);
        const b = (source & 0xff) + scale255(destination & 0xff, inverse);
        words[index] =
          (0xff000000 | (Math.min(r, 255) << 16) | (Math.min(g, 255) << 8) | Math.min(b, 255)) >>>
          0;
      }
    }
  }
}
