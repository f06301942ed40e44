/**
 * Capture through a writeback connector: a frame's commit also names a dumb buffer as
 * WRITEBACK_FB_ID and asks for an out-fence; when the fence signals, the buffer holds what the
 * CRTC showed. One capture is in flight at a time; requests queue.
 */
import { fd, waitReadable } from '../../../native/fd.js';
import type { AtomicRequest, DrmConnector, DrmDevice } from '../../../native/drm.js';
import { DrmFormat } from '../../../plugin/common/formats.js';
import { createDumbFramebuffer, destroyDumbFramebuffer, type DumbFramebuffer } from './dumb.js';

const CAPTURE_FENCE_GUARD_MS = 120_000;

interface CaptureRequest {
  resolve: (pixels: Uint8Array) => void;
  reject: (error: Error) => void;
}

/** A capture attached to a commit: finish it with the commit's out-fences. */
export interface AttachedCapture {
  request: CaptureRequest;
  fenceIndex: number;
}

export class WritebackCapture {
  private readonly queue: CaptureRequest[] = [];
  private inFlight = false;
  private buffer: DumbFramebuffer | null = null;

  /** @param done called when a capture finished (the backend may have a frame to make). */
  constructor(
    private readonly device: DrmDevice,
    private readonly connector: DrmConnector,
    private readonly width: number,
    private readonly height: number,
    private readonly done: () => void,
  ) {}

  /** The next frame: width × height XRGB8888, tightly packed. */
  request(): Promise<Uint8Array> {
    this.buffer ??= createDumbFramebuffer(this.device, this.width, this.height, DrmFormat.XRGB8888);
    return new Promise((resolve, reject) => this.queue.push({ resolve, reject }));
  }

  /** Whether a capture waits for a frame. */
  get due(): boolean {
    return this.queue.length > 0 && !this.inFlight;
  }

  /** Adds the writeback target and out-fence to a frame's commit, when a capture is due. */
  attach(request: AtomicRequest): AttachedCapture | null {
    if (!this.due || !this.buffer) return null;
    const capture = this.queue.shift()!;
    request.set(this.connector, 'WRITEBACK_FB_ID', this.buffer.fbId);
    return {
      request: capture,
      fenceIndex: request.outFence(this.connector, 'WRITEBACK_OUT_FENCE_PTR'),
    };
  }

  /** The commit carrying `attached` went through with `fences` (the fence fd is taken). */
  finish(attached: AttachedCapture, fences: number[]): void {
    const capture = attached.request;
    const fence = fences[attached.fenceIndex] ?? -1;
    if (fence < 0) {
      capture.reject(new Error('the kernel returned no writeback fence'));
      return;
    }
    this.inFlight = true;
    const buffer = this.buffer!;
    const { width, height } = this;
    waitReadable(fence, CAPTURE_FENCE_GUARD_MS)
      .then(
        () => {
          const source = new Uint8Array(buffer.map);
          const pixels = new Uint8Array(width * height * 4);
          for (let y = 0; y < height; y++) {
            pixels.set(
              source.subarray(y * buffer.pitch, y * buffer.pitch + width * 4),
              y * width * 4,
            );
          }
          capture.resolve(pixels);
        },
        (error: unknown) =>
          capture.reject(error instanceof Error ? error : new Error(String(error))),
      )
      .finally(() => {
        fd.close(fence);
        this.inFlight = false;
        this.done();
      });
  }

  /** Rejects every queued capture. */
  rejectAll(error: Error): void {
    for (const capture of this.queue.splice(0)) capture.reject(error);
  }

  release(log: (message: string) => void): void {
    if (this.buffer) destroyDumbFramebuffer(this.device, this.buffer, log);
    this.buffer = null;
  }
}
