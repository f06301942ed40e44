/**
 * Surface <-> buffer coordinate mapping: wp_viewporter source/destination, wl_surface
 * buffer_scale and buffer_transform (all eight wl_output.transform values), and the linux-dmabuf
 * y_invert flag, as one gl-matrix mat3 (column-major affine).
 */
import { mat3, vec2 } from 'gl-matrix';
import { rectFromEdges, type Rect } from './region.js';

/** wl_output.transform */
export const Transform = {
  NORMAL: 0,
  ROTATE_90: 1,
  ROTATE_180: 2,
  ROTATE_270: 3,
  FLIPPED: 4,
  FLIPPED_90: 5,
  FLIPPED_180: 6,
  FLIPPED_270: 7,
} as const;

export interface ViewportState {
  /** Source rectangle in surface-local units of the scaled, transformed buffer; null: unset. */
  source: { x: number; y: number; width: number; height: number } | null;
  /** Destination size in surface-local units; null: unset. */
  destination: { width: number; height: number } | null;
}

export interface BufferGeometry {
  bufferWidth: number;
  bufferHeight: number;
  scale: number;
  transform: number;
  viewport?: ViewportState;
  yInvert?: boolean;
}

/** Whether a transform swaps width and height (the 90 and 270 degree variants). */
export function swapsAxes(transform: number): boolean {
  return (transform & 1) === 1;
}

/** The buffer's size after transform and scale: the surface size without a viewport. */
export function transformedBufferSize(g: BufferGeometry): { width: number; height: number } {
  const [w, h] = swapsAxes(g.transform)
    ? [g.bufferHeight, g.bufferWidth]
    : [g.bufferWidth, g.bufferHeight];
  return { width: w / g.scale, height: h / g.scale };
}

/** Surface size in surface-local coordinates (integers: viewport destinations are integers, and
 * an unscaled source size must be integral, which the protocol layer checks). */
export function surfaceSize(g: BufferGeometry): { width: number; height: number } {
  const destination = g.viewport?.destination;
  if (destination) return { width: destination.width, height: destination.height };
  const source = g.viewport?.source;
  if (source) return { width: Math.trunc(source.width), height: Math.trunc(source.height) };
  const size = transformedBufferSize(g);
  return { width: Math.trunc(size.width), height: Math.trunc(size.height) };
}

/** Whether the viewport source rectangle lies inside the transformed, scaled buffer. */
export function viewportSourceFits(g: BufferGeometry): boolean {
  const source = g.viewport?.source;
  if (!source) return true;
  const size = transformedBufferSize(g);
  return (
    source.x >= 0 &&
    source.y >= 0 &&
    source.x + source.width <= size.width &&
    source.y + source.height <= size.height
  );
}

/**
 * Matrix from the transformed, scaled-up buffer (pixels, W x H after transform) to buffer pixels:
 * the inverse of the transform the client applied to its content.
 */
function untransformMatrix(transform: number, width: number, height: number): mat3 {
  // Columns: [a, b, 0, c, d, 0, tx, ty, 1] maps (x, y) to (a x + c y + tx, b x + d y + ty).
  switch (transform) {
    case Transform.ROTATE_90: // bx = y, by = W - x
      return mat3.fromValues(0, -1, 0, 1, 0, 0, 0, width, 1);
    case Transform.ROTATE_180: // bx = W - x, by = H - y
      return mat3.fromValues(-1, 0, 0, 0, -1, 0, width, height, 1);
    case Transform.ROTATE_270: // bx = H - y, by = x
      return mat3.fromValues(0, 1, 0, -1, 0, 0, height, 0, 1);
    case Transform.FLIPPED: // bx = W - x, by = y
      return mat3.fromValues(-1, 0, 0, 0, 1, 0, width, 0, 1);
    case Transform.FLIPPED_90: // bx = y, by = x
      return mat3.fromValues(0, 1, 0, 1, 0, 0, 0, 0, 1);
    case Transform.FLIPPED_180: // bx = x, by = H - y
      return mat3.fromValues(1, 0, 0, 0, -1, 0, 0, height, 1);
    case Transform.FLIPPED_270: // bx = H - y, by = W - x
      return mat3.fromValues(0, -1, 0, -1, 0, 0, height, width, 1);
    default:
      return mat3.create();
  }
}

/** Maps surface-local coordinates to buffer pixel coordinates. */
export function surfaceToBufferMatrix(g: BufferGeometry): mat3 {
  const transformed = transformedBufferSize(g);
  const size = surfaceSize(g);
  const source = g.viewport?.source ?? { x: 0, y: 0, ...transformed };
  const matrix = mat3.create();
  if (g.yInvert) {
    mat3.multiply(matrix, matrix, mat3.fromValues(1, 0, 0, 0, -1, 0, 0, g.bufferHeight, 1));
  }
  mat3.multiply(
    matrix,
    matrix,
    untransformMatrix(g.transform, transformed.width * g.scale, transformed.height * g.scale),
  );
  mat3.scale(matrix, matrix, [g.scale, g.scale]);
  mat3.translate(matrix, matrix, [source.x, source.y]);
  if (size.width > 0 && size.height > 0) {
    mat3.scale(matrix, matrix, [source.width / size.width, source.height / size.height]);
  }
  return matrix;
}

/** The bounding box of a rectangle mapped through a matrix, widened to whole pixels. */
export function transformRectBounds(matrix: mat3, r: Rect): Rect {
  const corners = [
    [r.x, r.y],
    [r.x + r.width, r.y],
    [r.x, r.y + r.height],
    [r.x + r.width, r.y + r.height],
  ];
  let left = Infinity;
  let top = Infinity;
  let right = -Infinity;
  let bottom = -Infinity;
  const point = vec2.create();
  for (const [x, y] of corners) {
    vec2.transformMat3(point, [x, y], matrix);
    left = Math.min(left, point[0]);
    top = Math.min(top, point[1]);
    right = Math.max(right, point[0]);
    bottom = Math.max(bottom, point[1]);
  }
  return rectFromEdges(Math.floor(left), Math.floor(top), Math.ceil(right), Math.ceil(bottom));
}

/** Buffer-coordinate damage (wl_surface.damage_buffer) in surface-local coordinates. */
export function bufferRectToSurface(g: BufferGeometry, r: Rect): Rect {
  const inverse = mat3.invert(mat3.create(), surfaceToBufferMatrix(g));
  if (!inverse) return { x: 0, y: 0, ...surfaceSize(g) };
  return transformRectBounds(inverse, r);
}
