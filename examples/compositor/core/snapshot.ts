/**
 * A compositor-side copy of a wl_shm buffer. Copying at commit lets the compositor release the
 * client's buffer at once (the client can draw into it again) and keeps the renderer from ever
 * reading memory the client may truncate. The copy itself goes through the source's `copyArea`
 * when it has one (wl_shm: pread for pools that are not sealed against shrinking).
 */
import { formatInfo } from '../dmabuf/formats.js';
import type { RenderBuffer } from '../render/compose.js';
import type { PlaneView } from '../render/pixels.js';
import { intersectRects, isEmptyRect, type Rect } from '../render/region.js';

/** A buffer that copies an area out itself, without handing out its memory (wl_shm). */
export interface AreaSource extends RenderBuffer {
  copyArea(area: Rect, bytesPerPixel: number, target: Uint8Array, targetStride: number): boolean;
}

function isAreaSource(source: RenderBuffer): source is AreaSource {
  return typeof (source as Partial<AreaSource>).copyArea === 'function';
}

export class SnapshotBuffer implements RenderBuffer {
  readonly bytes: Uint8Array;
  readonly stride: number;
  readonly bytesPerPixel: number;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly format: number,
  ) {
    const info = formatInfo.get(format);
    if (!info || info.planes.length !== 1) throw new Error(`cannot snapshot format ${format}`);
    this.bytesPerPixel = info.planes[0].bytesPerPixel;
    this.stride = width * this.bytesPerPixel;
    this.bytes = new Uint8Array(this.stride * height);
  }

  matches(source: RenderBuffer): boolean {
    return (
      source.width === this.width && source.height === this.height && source.format === this.format
    );
  }

  /** Copies `area` (buffer pixels) from a single-plane source. False when it cannot be read. */
  copyFrom(source: RenderBuffer, area: Rect): boolean {
    const clipped = intersectRects(area, { x: 0, y: 0, width: this.width, height: this.height });
    if (isEmptyRect(clipped)) return true;
    if (isAreaSource(source)) {
      return source.copyArea(clipped, this.bytesPerPixel, this.bytes, this.stride);
    }
    const planes = source.beginRead();
    if (!planes) return false;
    try {
      const [plane] = planes;
      const rowBytes = clipped.width * this.bytesPerPixel;
      for (let y = clipped.y; y < clipped.y + clipped.height; y++) {
        const from = plane.offset + y * plane.stride + clipped.x * this.bytesPerPixel;
        if (from + rowBytes > plane.bytes.byteLength) return false;
        this.bytes.set(
          plane.bytes.subarray(from, from + rowBytes),
          y * this.stride + clipped.x * this.bytesPerPixel,
        );
      }
      return true;
    } finally {
      source.endRead();
    }
  }

  beginRead(): PlaneView[] {
    return [{ bytes: this.bytes, offset: 0, stride: this.stride }];
  }

  endRead(): void {}
}
