/**
 * Framebuffers for client dma-bufs, one per wl_buffer: PRIME import of each plane fd, AddFB2 with
 * the buffer's modifier, cached until the buffer is destroyed. GEM handles are reference counted
 * because PRIME gives the same handle for the same dma-buf (two wl_buffers may share one).
 *
 * A buffer destroyed while its framebuffer is on screen (or queued) keeps the framebuffer until
 * the backend says it is no longer used: RmFB of a framebuffer in use would switch the plane off.
 */
import { DmabufBuffer } from '../buffers/dmabuf-buffer.js';
import { Modifier } from '../dmabuf/formats.js';
import type { DrmDevice } from '../../../native/drm.js';

export interface ScanoutFramebuffer {
  fbId: number;
  handles: number[];
  /** Set when the wl_buffer is gone; the framebuffer is removed once not in use. */
  gone: boolean;
  /** Plane test results by plane geometry key: null = accepted, string = why refused. */
  tested: Map<string, string | null>;
}

interface PlaneDescriptor {
  fd: number;
  offset: number;
  stride: number;
}

/** The plane fds of a dma-buf buffer (borrowed: the buffer owns them). */
function planesOf(buffer: DmabufBuffer): readonly PlaneDescriptor[] {
  return buffer.planeDescriptors;
}

export class FramebufferCache {
  private readonly entries = new Map<DmabufBuffer, ScanoutFramebuffer>();
  /** Buffers that could not be imported, with the reason (not retried). */
  private readonly refused = new WeakMap<DmabufBuffer, string>();
  private readonly handleRefs = new Map<number, number>();
  private readonly gone = new Set<ScanoutFramebuffer>();
  private closed = false;

  constructor(
    private readonly device: DrmDevice,
    /** Whether a framebuffer is on screen or queued (then removal waits). */
    private readonly inUse: (fbId: number) => boolean,
    private readonly log: (message: string) => void,
  ) {}

  /** Framebuffers held: cached ones plus those of destroyed buffers still waiting for a flip. */
  get size(): number {
    return this.entries.size + this.gone.size;
  }

  /** The framebuffer for `buffer`, importing it on first use; a string says why it cannot be. */
  get(buffer: DmabufBuffer): ScanoutFramebuffer | string {
    const cached = this.entries.get(buffer);
    if (cached) return cached;
    const refusal = this.refused.get(buffer);
    if (refusal !== undefined) return refusal;
    const planes = planesOf(buffer);
    if (planes.length === 0) return 'buffer has no planes (destroyed)';
    const handles: number[] = [];
    try {
      for (const plane of planes) handles.push(this.takeHandle(this.device.importDmabuf(plane.fd)));
      const fbId = this.device.addFramebuffer({
        width: buffer.width,
        height: buffer.height,
        format: buffer.format,
        handles,
        pitches: planes.map((plane) => plane.stride),
        offsets: planes.map((plane) => plane.offset),
        // The implicit modifier: AddFB2 without DRM_MODE_FB_MODIFIERS (the driver's default).
        modifiers:
          buffer.modifier === Modifier.INVALID ? undefined : planes.map(() => buffer.modifier),
      });
      const entry: ScanoutFramebuffer = { fbId, handles, gone: false, tested: new Map() };
      this.entries.set(buffer, entry);
      this.hookDestroy(buffer, entry);
      return entry;
    } catch (error) {
      for (const handle of handles) this.dropHandle(handle);
      const reason = `import failed: ${error instanceof Error ? error.message : String(error)}`;
      this.refused.set(buffer, reason);
      this.log(`scanout: ${reason}`);
      return reason;
    }
  }

  /** Removes framebuffers of destroyed buffers that are no longer on screen or queued. */
  collect(): void {
    for (const entry of [...this.gone]) {
      if (this.inUse(entry.fbId)) continue;
      this.gone.delete(entry);
      this.release(entry);
    }
  }

  /** Removes every framebuffer (the caller took them off the planes first). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of [...this.entries.values(), ...this.gone]) this.release(entry);
    this.entries.clear();
    this.gone.clear();
  }

  private hookDestroy(buffer: DmabufBuffer, entry: ScanoutFramebuffer): void {
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = () => {
      if (this.entries.get(buffer) === entry) {
        this.entries.delete(buffer);
        entry.gone = true;
        if (!this.closed) {
          this.gone.add(entry);
          this.collect();
        }
      }
      destroy();
    };
  }

  private release(entry: ScanoutFramebuffer): void {
    if (entry.fbId === 0) return;
    try {
      this.device.removeFramebuffer(entry.fbId);
    } catch (error) {
      this.log(`scanout: RmFB ${entry.fbId} failed: ${String(error)}`);
    }
    entry.fbId = 0;
    for (const handle of entry.handles.splice(0)) this.dropHandle(handle);
  }

  private takeHandle(handle: number): number {
    this.handleRefs.set(handle, (this.handleRefs.get(handle) ?? 0) + 1);
    return handle;
  }

  private dropHandle(handle: number): void {
    const count = (this.handleRefs.get(handle) ?? 1) - 1;
    if (count > 0) {
      this.handleRefs.set(handle, count);
      return;
    }
    this.handleRefs.delete(handle);
    try {
      this.device.closeHandle(handle);
    } catch (error) {
      this.log(`scanout: GEM close ${handle} failed: ${String(error)}`);
    }
  }
}

export function isDmabufBuffer(buffer: unknown): buffer is DmabufBuffer {
  return buffer instanceof DmabufBuffer;
}
