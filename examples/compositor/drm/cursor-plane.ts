/**
 * The cursor plane of a direct-scanout frame: a small top layer (the cursor surface) goes on the
 * hardware cursor plane instead of being composed. Its image is copied into one of two ARGB8888
 * dumb buffers (made on first use, double-buffered so the one on screen is never written).
 */
import type { AtomicRequest, DrmDevice, DrmPlane } from '../../../native/drm.js';
import { DrmFormat } from '../../../plugin/common/formats.js';
import { createDumbFramebuffer, destroyDumbFramebuffer, type DumbFramebuffer } from './dumb.js';
import { splitCursorLayer, type CursorCandidate, type PlaneFormats } from './scanout.js';

type Layers = Parameters<typeof splitCursorLayer>[0];

export class CursorPlane {
  private readonly buffers: DumbFramebuffer[] = [];
  /** Index of the buffer on screen (-1: none yet). */
  private front = -1;
  /** Whether the plane is on (the last commit set it). */
  private on = false;

  /**
   * @param max the largest cursor the driver takes (DRM_CAP_CURSOR_WIDTH / HEIGHT).
   */
  constructor(
    private readonly device: DrmDevice,
    readonly plane: DrmPlane,
    private readonly crtcId: number,
    private readonly formats: PlaneFormats,
    private readonly max: { width: number; height: number },
  ) {}

  /** Takes the cursor layer out of `layers` when the plane can show it. */
  split(layers: Layers, outputWidth: number, outputHeight: number) {
    return splitCursorLayer(layers, outputWidth, outputHeight, this.max, this.formats);
  }

  /** Adds the plane's state for `cursor` (or turns it off when it was on) to `request`. */
  set(request: AtomicRequest, cursor: CursorCandidate | null, fbId: number): void {
    const plane = this.plane;
    if (!cursor) {
      if (this.on) request.set(plane, 'FB_ID', 0).set(plane, 'CRTC_ID', 0);
      return;
    }
    request
      .set(plane, 'FB_ID', fbId)
      .set(plane, 'CRTC_ID', this.crtcId)
      .set(plane, 'SRC_X', 0)
      .set(plane, 'SRC_Y', 0)
      .set(plane, 'SRC_W', cursor.width * 65536)
      .set(plane, 'SRC_H', cursor.height * 65536)
      .set(plane, 'CRTC_X', cursor.layer.x)
      .set(plane, 'CRTC_Y', cursor.layer.y)
      .set(plane, 'CRTC_W', cursor.width)
      .set(plane, 'CRTC_H', cursor.height);
  }

  /** A framebuffer to TEST_ONLY a commit with the plane (the buffers are made if needed). */
  testFramebuffer(cursor: CursorCandidate): number {
    if (this.buffers.length === 0) this.fill(cursor);
    return this.buffers[0]?.fbId ?? 0;
  }

  framebuffer(index: number): number {
    return this.buffers[index]!.fbId;
  }

  /** Copies the cursor layer into the back buffer; returns its index, or a reason. */
  fill(cursor: CursorCandidate): number | string {
    if (this.buffers.length === 0) {
      for (let i = 0; i < 2; i++) {
        this.buffers.push(
          createDumbFramebuffer(this.device, this.max.width, this.max.height, DrmFormat.ARGB8888),
        );
      }
    }
    const index = this.front === 0 ? 1 : 0;
    const target = this.buffers[index]!;
    const buffer = cursor.layer.buffer;
    const planes = buffer.beginRead();
    if (!planes) return 'cursor surface unreadable';
    try {
      const source = planes[0]!;
      const rowBytes = cursor.width * 4;
      const end = source.offset + source.stride * (cursor.height - 1) + rowBytes;
      if (source.stride < rowBytes || end > source.bytes.byteLength)
        return 'cursor buffer too short';
      const bytes = new Uint8Array(target.map);
      const opaque = buffer.format === DrmFormat.XRGB8888;
      for (let y = 0; y < cursor.height; y++) {
        const from = source.offset + y * source.stride;
        bytes.set(source.bytes.subarray(from, from + rowBytes), y * target.pitch);
        // XRGB's X byte is undefined: the ARGB cursor buffer needs it opaque.
        if (opaque) for (let x = 3; x < rowBytes; x += 4) bytes[y * target.pitch + x] = 0xff;
      }
    } finally {
      buffer.endRead();
    }
    return index;
  }

  /** A commit went through: buffer `index` is on screen (-1: the plane is off). */
  committed(index: number): void {
    this.on = index >= 0;
    if (index >= 0) this.front = index;
  }

  release(log: (message: string) => void): void {
    for (const buffer of this.buffers.splice(0)) destroyDumbFramebuffer(this.device, buffer, log);
  }
}
