/**
 * Damage accumulation between commits. Flushes that arrive while a frame callback is pending are
 * merged here and sent as damage_buffer rectangles with the next commit. Storage is preallocated:
 * adding, reading and clearing allocate nothing.
 */

/** A rectangle in buffer coordinates. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * A bounded set of damage rectangles clipped to the buffer. When more than `capacity` distinct
 * rectangles accumulate they collapse into their bounding box: more damage than needed is
 * always correct, less never is.
 */
export class DamageAccumulator {
  /** x0, y0, x1, y1 per rectangle (exclusive ends). */
  private readonly boxes: Int32Array;
  private used = 0;
  private bufferWidth: number;
  private bufferHeight: number;

  constructor(
    width: number,
    height: number,
    readonly capacity = 8,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`damage capacity must be a positive integer, got ${capacity}`);
    }
    this.boxes = new Int32Array(capacity * 4);
    this.bufferWidth = 0;
    this.bufferHeight = 0;
    this.resize(width, height);
  }

  /** Sets new buffer dimensions; the accumulated damage is dropped (a new buffer is full damage). */
  resize(width: number, height: number): void {
    if (!isDimension(width) || !isDimension(height)) {
      throw new RangeError(`invalid buffer size ${width}x${height}`);
    }
    this.bufferWidth = width;
    this.bufferHeight = height;
    this.used = 0;
  }

  get width(): number {
    return this.bufferWidth;
  }

  get height(): number {
    return this.bufferHeight;
  }

  /** The rectangles as x0, y0, x1, y1 each (ends exclusive), the first `count` of them valid. */
  get boxArray(): Int32Array {
    return this.boxes;
  }

  /** Number of rectangles to send. */
  get count(): number {
    return this.used;
  }

  get empty(): boolean {
    return this.used === 0;
  }

  /**
   * Adds a rectangle (possibly hostile: any numbers). It is clipped to the buffer; empty, negative
   * or non-integer rectangles are ignored. Returns whether anything was added.
   */
  add(x: number, y: number, width: number, height: number): boolean {
    if (!Number.isInteger(x) || !Number.isInteger(y)) return false;
    if (!Number.isInteger(width) || !Number.isInteger(height)) return false;
    if (width <= 0 || height <= 0) return false;
    // Doubles hold these sums exactly for any integer input below 2^53.
    const x0 = Math.max(0, x);
    const y0 = Math.max(0, y);
    const x1 = Math.min(this.bufferWidth, x + width);
    const y1 = Math.min(this.bufferHeight, y + height);
    if (!(x1 > x0 && y1 > y0)) return false;
    this.insert(x0, y0, x1, y1);
    return true;
  }

  /** Damages the whole buffer. */
  addFull(): void {
    this.used = 0;
    this.insert(0, 0, this.bufferWidth, this.bufferHeight);
  }

  private insert(x0: number, y0: number, x1: number, y1: number): void {
    const b = this.boxes;
    // Already covered: nothing to do.
    for (let i = 0; i < this.used; i++) {
      const o = i * 4;
      if (b[o] <= x0 && b[o + 1] <= y0 && b[o + 2] >= x1 && b[o + 3] >= y1) return;
    }
    // Drop the rectangles the new one covers (compacting in place).
    let kept = 0;
    for (let i = 0; i < this.used; i++) {
      const o = i * 4;
      const covered = x0 <= b[o] && y0 <= b[o + 1] && x1 >= b[o + 2] && y1 >= b[o + 3];
      if (covered) continue;
      if (kept !== i) b.copyWithin(kept * 4, o, o + 4);
      kept++;
    }
    this.used = kept;
    if (this.used === this.capacity) {
      // Full: collapse everything, the new rectangle included, into one bounding box.
      for (let i = 0; i < this.used; i++) {
        const o = i * 4;
        if (b[o] < x0) x0 = b[o];
        if (b[o + 1] < y0) y0 = b[o + 1];
        if (b[o + 2] > x1) x1 = b[o + 2];
        if (b[o + 3] > y1) y1 = b[o + 3];
      }
      this.used = 0;
    }
    const o = this.used * 4;
    b[o] = x0;
    b[o + 1] = y0;
    b[o + 2] = x1;
    b[o + 3] = y1;
    this.used++;
  }

  x(i: number): number {
    return this.boxes[i * 4];
  }

  y(i: number): number {
    return this.boxes[i * 4 + 1];
  }

  rectWidth(i: number): number {
    return this.boxes[i * 4 + 2] - this.boxes[i * 4];
  }

  rectHeight(i: number): number {
    return this.boxes[i * 4 + 3] - this.boxes[i * 4 + 1];
  }

  /** Total damaged area in pixels (overlaps counted once per rectangle). */
  area(): number {
    let total = 0;
    for (let i = 0; i < this.used; i++) total += this.rectWidth(i) * this.rectHeight(i);
    return total;
  }

  /** The rectangles as objects (allocates; for tests and logs). */
  toRects(): Rect[] {
    const rects: Rect[] = [];
    for (let i = 0; i < this.used; i++) {
      rects.push({
        x: this.x(i),
        y: this.y(i),
        width: this.rectWidth(i),
        height: this.rectHeight(i),
      });
    }
    return rects;
  }

  clear(): void {
    this.used = 0;
  }
}

function isDimension(value: number): boolean {
  return Number.isInteger(value) && value > 0 && value <= 0x7fffffff;
}
