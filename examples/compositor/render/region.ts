/**
 * Integer rectangles and regions (sets of pixels as disjoint rectangles), for damage tracking and
 * wl_region. Coordinates are clamped to a signed 32-bit range so client numbers cannot overflow.
 */

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

const COORD_LIMIT = 0x7fffffff;

function clampCoord(value: number): number {
  if (!Number.isFinite(value)) return value > 0 ? COORD_LIMIT : -COORD_LIMIT;
  return Math.max(-COORD_LIMIT, Math.min(COORD_LIMIT, Math.trunc(value)));
}

/** A rectangle from two corners, clamped; empty (width or height 0) when inverted. */
export function rectFromEdges(x1: number, y1: number, x2: number, y2: number): Rect {
  const left = clampCoord(x1);
  const top = clampCoord(y1);
  const right = clampCoord(x2);
  const bottom = clampCoord(y2);
  return { x: left, y: top, width: Math.max(0, right - left), height: Math.max(0, bottom - top) };
}

/** A rectangle from client numbers (x, y, width, height may be anything a client sends). */
export function rect(x: number, y: number, width: number, height: number): Rect {
  if (width <= 0 || height <= 0) return { x: clampCoord(x), y: clampCoord(y), width: 0, height: 0 };
  return rectFromEdges(x, y, clampCoord(x) + clampCoord(width), clampCoord(y) + clampCoord(height));
}

export function isEmptyRect(r: Rect): boolean {
  return r.width <= 0 || r.height <= 0;
}

export function intersectRects(a: Rect, b: Rect): Rect {
  return rectFromEdges(
    Math.max(a.x, b.x),
    Math.max(a.y, b.y),
    Math.min(a.x + a.width, b.x + b.width),
    Math.min(a.y + a.height, b.y + b.height),
  );
}

/** The parts of `a` outside `b`: at most four disjoint rectangles. */
export function subtractRect(a: Rect, b: Rect): Rect[] {
  const overlap = intersectRects(a, b);
  if (isEmptyRect(overlap)) return isEmptyRect(a) ? [] : [a];
  const pieces = [
    rectFromEdges(a.x, a.y, a.x + a.width, overlap.y), // above
    rectFromEdges(a.x, overlap.y + overlap.height, a.x + a.width, a.y + a.height), // below
    rectFromEdges(a.x, overlap.y, overlap.x, overlap.y + overlap.height), // left
    rectFromEdges(overlap.x + overlap.width, overlap.y, a.x + a.width, overlap.y + overlap.height), // right
  ];
  return pieces.filter((piece) => !isEmptyRect(piece));
}

/** A set of pixels, kept as disjoint rectangles. */
export class Region {
  private rects: Rect[] = [];

  static of(...rects: Rect[]): Region {
    const region = new Region();
    for (const r of rects) region.add(r);
    return region;
  }

  get rectangles(): readonly Rect[] {
    return this.rects;
  }

  isEmpty(): boolean {
    return this.rects.length === 0;
  }

  clear(): void {
    this.rects = [];
  }

  clone(): Region {
    const copy = new Region();
    copy.rects = this.rects.map((r) => ({ ...r }));
    return copy;
  }

  /** Union with a rectangle. */
  add(r: Rect): this {
    if (isEmptyRect(r)) return this;
    let pieces = [r];
    for (const existing of this.rects) {
      pieces = pieces.flatMap((piece) => subtractRect(piece, existing));
      if (pieces.length === 0) return this;
    }
    this.rects.push(...pieces);
    return this;
  }

  /** Union with another region. */
  union(other: Region): this {
    for (const r of other.rects) this.add(r);
    return this;
  }

  subtract(r: Rect): this {
    if (isEmptyRect(r)) return this;
    this.rects = this.rects.flatMap((existing) => subtractRect(existing, r));
    return this;
  }

  /** Intersection with a rectangle, in place. */
  intersectRect(r: Rect): this {
    this.rects = this.rects
      .map((existing) => intersectRects(existing, r))
      .filter((x) => !isEmptyRect(x));
    return this;
  }

  /** Intersection with another region, as a new region. */
  intersect(other: Region): Region {
    const result = new Region();
    for (const a of this.rects) {
      for (const b of other.rects) {
        const overlap = intersectRects(a, b);
        if (!isEmptyRect(overlap)) result.rects.push(overlap); // disjoint: a's and b's are
      }
    }
    return result;
  }

  containsPoint(x: number, y: number): boolean {
    return this.rects.some((r) => x >= r.x && y >= r.y && x < r.x + r.width && y < r.y + r.height);
  }

  area(): number {
    return this.rects.reduce((sum, r) => sum + r.width * r.height, 0);
  }

  extents(): Rect {
    if (this.rects.length === 0) return { x: 0, y: 0, width: 0, height: 0 };
    let left = Infinity;
    let top = Infinity;
    let right = -Infinity;
    let bottom = -Infinity;
    for (const r of this.rects) {
      left = Math.min(left, r.x);
      top = Math.min(top, r.y);
      right = Math.max(right, r.x + r.width);
      bottom = Math.max(bottom, r.y + r.height);
    }
    return rectFromEdges(left, top, right, bottom);
  }

  translate(dx: number, dy: number): this {
    this.rects = this.rects.map((r) => rect(r.x + dx, r.y + dy, r.width, r.height));
    return this;
  }

  /** Keeps damage cheap: past `limit` rectangles, collapse to the bounding box (over-approximates,
   * which is always safe for damage; never use it for input or opaque regions). */
  simplify(limit = 64): this {
    if (this.rects.length > limit) this.rects = [this.extents()];
    return this;
  }
}
