/**
 * Whether an output's frame can go straight to the primary plane: pure policy over the scene's
 * layers, unit-tested without a device. The kernel still has the last word (the backend tests the
 * resulting commit with TEST_ONLY before using it).
 */
import type { SceneLayer } from '../render/compose.js';
import { intersectRects, isEmptyRect } from '../render/region.js';
import { Fourcc as formatCodes, formatInfo, fourccName, Modifier } from '../dmabuf/formats.js';
import { surfaceSize } from '../render/transform.js';

/** What a plane takes: format + modifier pairs (IN_FORMATS, or the format list with LINEAR). */
export interface PlaneFormats {
  has(format: number, modifier: bigint): boolean;
}

export function planeFormatSet(
  pairs: readonly { format: number; modifier: bigint }[],
): PlaneFormats {
  const keys = new Set(pairs.map((pair) => `${pair.format}:${pair.modifier}`));
  return { has: (format, modifier) => keys.has(`${format}:${modifier}`) };
}

/** A source rectangle in 16.16 fixed point (the plane's SRC_* properties). */
export interface FixedRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface ScanoutCandidate {
  kind: 'direct';
  layer: SceneLayer;
  /** Buffer area, 16.16 fixed point. */
  source: FixedRect;
  /** Output area, whole pixels. */
  destination: { x: number; y: number; width: number; height: number };
}

export type ScanoutDecision = ScanoutCandidate | { kind: 'compose'; reason: string };

/** The buffer facts the policy needs; null when the layer's buffer is not a dma-buf. */
export interface ScanoutBufferInfo {
  format: number;
  modifier: bigint;
}

const toFixed = (value: number): number => Math.round(value * 65536);

/**
 * Picks the layer to scan out on the primary plane, or says why the frame is composed. `layers`
 * are in output coordinates, bottom to top. The primary plane replaces the whole picture, so the
 * one visible layer must cover the output exactly and be opaque (a translucent buffer would show
 * the plane's black instead of the compositor's background).
 */
export function chooseScanout(
  layers: readonly SceneLayer[],
  outputWidth: number,
  outputHeight: number,
  bufferInfo: (layer: SceneLayer) => ScanoutBufferInfo | null,
  primaryFormats: PlaneFormats,
): ScanoutDecision {
  const outputRect = { x: 0, y: 0, width: outputWidth, height: outputHeight };
  const visible = layers.filter((layer) => {
    const size = surfaceSize(layer.geometry);
    const bounds = { x: layer.x, y: layer.y, width: size.width, height: size.height };
    return !isEmptyRect(intersectRects(bounds, outputRect));
  });
  if (visible.length === 0) return { kind: 'compose', reason: 'no surface on the output' };
  if (visible.length > 1) {
    return { kind: 'compose', reason: `${visible.length} surfaces visible` };
  }
  const layer = visible[0]!;
  const info = bufferInfo(layer);
  if (!info) return { kind: 'compose', reason: 'buffer is not a dma-buf' };
  const g = layer.geometry;
  if (g.transform !== 0) return { kind: 'compose', reason: `buffer transform ${g.transform}` };
  if (g.yInvert || layer.buffer.yInvert) return { kind: 'compose', reason: 'y-inverted buffer' };
  const size = surfaceSize(g);
  if (
    layer.x !== 0 ||
    layer.y !== 0 ||
    size.width !== outputWidth ||
    size.height !== outputHeight
  ) {
    return {
      kind: 'compose',
      reason: `surface ${size.width}x${size.height} at ${layer.x},${layer.y} does not cover the output`,
    };
  }
  const formatDescription = formatInfo.get(info.format);
  if (formatDescription?.hasAlpha !== false) {
    return { kind: 'compose', reason: `format ${fourccName(info.format)} is not opaque` };
  }
  // The implicit modifier means linear for the memory this compositor is handed.
  const planeTakes =
    primaryFormats.has(info.format, info.modifier) ||
    (info.modifier === Modifier.INVALID && primaryFormats.has(info.format, Modifier.LINEAR));
  if (!planeTakes) {
    return {
      kind: 'compose',
      reason: `primary plane does not take ${fourccName(info.format)} modifier 0x${info.modifier.toString(16)}`,
    };
  }
  const viewportSource = g.viewport?.source;
  const source = viewportSource
    ? {
        x: toFixed(viewportSource.x * g.scale),
        y: toFixed(viewportSource.y * g.scale),
        width: toFixed(viewportSource.width * g.scale),
        height: toFixed(viewportSource.height * g.scale),
      }
    : { x: 0, y: 0, width: toFixed(g.bufferWidth), height: toFixed(g.bufferHeight) };
  return {
    kind: 'direct',
    layer,
    source,
    destination: { x: 0, y: 0, width: outputWidth, height: outputHeight },
  };
}

/** A layer that can go on the cursor plane as it is: its pixels are copied into a cursor
 * buffer, the plane positions it. */
export interface CursorCandidate {
  layer: SceneLayer;
  width: number;
  height: number;
}

/**
 * Splits the topmost visible layer off for the cursor plane when it is small enough, unscaled,
 * untransformed and ARGB8888/XRGB8888, and something else lies under it. Returns the layers left
 * for the primary plane. With no candidate, `rest` is `layers` unchanged.
 */
export function splitCursorLayer(
  layers: readonly SceneLayer[],
  outputWidth: number,
  outputHeight: number,
  maxCursor: { width: number; height: number },
  cursorFormats: PlaneFormats,
): { cursor: CursorCandidate | null; rest: readonly SceneLayer[] } {
  const outputRect = { x: 0, y: 0, width: outputWidth, height: outputHeight };
  const visibleIndices = layers
    .map((layer, index) => ({ layer, index }))
    .filter(({ layer }) => {
      const size = surfaceSize(layer.geometry);
      const bounds = { x: layer.x, y: layer.y, width: size.width, height: size.height };
      return !isEmptyRect(intersectRects(bounds, outputRect));
    });
  const none = { cursor: null, rest: layers };
  if (visibleIndices.length < 2) return none;
  const { layer, index } = visibleIndices[visibleIndices.length - 1]!;
  const g = layer.geometry;
  if (g.transform !== 0 || g.scale !== 1 || g.viewport?.source || g.viewport?.destination) {
    return none;
  }
  if (g.yInvert || layer.buffer.yInvert) return none;
  const { bufferWidth: width, bufferHeight: height } = g;
  if (width > maxCursor.width || height > maxCursor.height) return none;
  const format = layer.buffer.format;
  if (format !== formatCodes.ARGB8888 && format !== formatCodes.XRGB8888) return none;
  if (!cursorFormats.has(formatCodes.ARGB8888, Modifier.LINEAR)) return none;
  return { cursor: { layer, width, height }, rest: layers.filter((_, i) => i !== index) };
}
