/**
 * The software renderer: composes stacked surfaces into an XRGB8888 output image, recomposing
 * only the damaged part of the output, with nearest sampling through each surface's
 * surface-to-buffer matrix (viewport, scale, transform, y-invert).
 */
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

/** An XRGB8888 image (little-endian B, G, R, X bytes; X written as 0xff). */
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
      for (const piece of pieces) drawPiece(image, layer, piece, m, reader);
    } finally {
      layer.buffer.endRead();
    }
  }
  return stats;
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
        const r =
          ((source >>> 16) & 0xff) + Math.round((((destination >>> 16) & 0xff) * inverse) / 255);
        const g =
          ((source >>> 8) & 0xff) + Math.round((((destination >>> 8) & 0xff) * inverse) / 255);
        const b = (source & 0xff) + Math.round(((destination & 0xff) * inverse) / 255);
        words[index] =
          (0xff000000 | (Math.min(r, 255) << 16) | (Math.min(g, 255) << 8) | Math.min(b, 255)) >>>
          0;
      }
    }
  }
}
