/**
 * The guest's cursor. With a wl_pointer the host pointer shows the guest cursor image while it
 * is over the head's window (wl_pointer.set_cursor, with the hotspot). Without a pointer (a
 * headless or seatless compositor) the image goes on a subsurface at the guest's cursor
 * position, so it appears in the window like the guest drew it. Without wl_subcompositor
 * either, the cursor is skipped (said once in the log).
 */
import { fd } from '../../native/fd.js';
import type {
  WlBufferProxy,
  WlPointerProxy,
  WlSubsurfaceProxy,
  WlSurfaceProxy,
} from '../../build/protocols/index.js';
import type { CursorUpdate } from '../sources/types.js';
import { DrmFormat, drmToShmFormat } from './formats.js';
import type { PresentGlobals } from './globals.js';

export type CursorMode = 'pointer' | 'subsurface' | 'none';

/** Largest cursor accepted (virtio-gpu cursors are 64x64). */
const MAX_CURSOR = 512;

export class HeadCursor {
  private surface: WlSurfaceProxy | null = null;
  private subsurface: WlSubsurfaceProxy | null = null;
  private buffer: WlBufferProxy | null = null;
  private hotX = 0;
  private hotY = 0;
  private visible = false;
  /** Pointer serial of the last enter into the parent window, while the pointer is inside. */
  private enterSerial: number | null = null;
  private pointer: WlPointerProxy | null = null;

  constructor(
    private readonly globals: PresentGlobals,
    private readonly parent: WlSurfaceProxy,
    /** Commits the parent when idle (subsurface positions apply on parent commit). */
    private readonly commitParent: () => void,
  ) {}

  mode(): CursorMode {
    if (this.pointer) return 'pointer';
    if (this.globals.subcompositor) return 'subsurface';
    return 'none';
  }

  /** The pointer entered (serial) or left (null) the parent surface. */
  pointerFocus(pointer: WlPointerProxy, serial: number | null): void {
    this.pointer = pointer;
    this.enterSerial = serial;
    if (serial !== null) this.applyPointerCursor();
  }

  /** The seat's pointer went away. */
  pointerGone(): void {
    this.pointer = null;
    this.enterSerial = null;
  }

  /** Returns false when the update was ignored (no way to show it, or a bad image). */
  update(update: CursorUpdate): boolean {
    const mode = this.mode();
    if (mode === 'none') return false;
    // The role first: some compositors (weston) ignore content committed before it.
    if (mode === 'subsurface') this.ensureSubsurface();
    if (update.image !== undefined) {
      if (update.image === null) {
        this.visible = false;
        this.replaceBuffer(null);
      } else {
        const { width, height, pixels, fourcc } = update.image;
        const sane =
          Number.isInteger(width) &&
          Number.isInteger(height) &&
          width > 0 &&
          height > 0 &&
          width <= MAX_CURSOR &&
          height <= MAX_CURSOR &&
          pixels.byteLength >= width * height * 4 &&
          (fourcc === DrmFormat.ARGB8888 || fourcc === DrmFormat.XRGB8888);
        if (!sane) return false;
        this.hotX = update.image.hotX;
        this.hotY = update.image.hotY;
        this.visible = true;
        this.replaceBuffer(this.makeBuffer(width, height, fourcc, pixels));
      }
    }
    if (mode === 'pointer') {
      this.applyPointerCursor();
    } else {
      this.subsurface?.setPosition(update.x - this.hotX, update.y - this.hotY);
      this.commitParent();
    }
    return true;
  }

  private ensureSurface(): WlSurfaceProxy {
    if (!this.surface) this.surface = this.globals.compositor.createSurface();
    return this.surface;
  }

  private ensureSubsurface(): void {
    if (this.subsurface || !this.globals.subcompositor) return;
    const surface = this.ensureSurface();
    this.subsurface = this.globals.subcompositor.getSubsurface(surface, this.parent);
    this.subsurface.setDesync();
  }

  private makeBuffer(
    width: number,
    height: number,
    fourcc: number,
    pixels: Uint8Array,
  ): WlBufferProxy | null {
    if (!this.globals.shm) return null;
    const size = width * height * 4;
    const memfd = fd.memfdCreate('guestfb-cursor', false);
    try {
      fd.ftruncate(memfd, size);
      fd.pwrite(memfd, pixels.subarray(0, size), 0);
      const pool = this.globals.shm.createPool(memfd, size);
      const buffer = pool.createBuffer(
        0,
        width,
        height,
        width * 4,
        drmToShmFormat(fourcc) as never,
      );
      pool.destroy();
      return buffer;
    } finally {
      fd.close(memfd);
    }
  }

  private replaceBuffer(buffer: WlBufferProxy | null): void {
    const surface = this.ensureSurface();
    surface.attach(buffer, 0, 0);
    if (buffer) surface.damageBuffer(0, 0, 0x7fffffff, 0x7fffffff);
    surface.commit();
    if (this.buffer?.alive) this.buffer.destroy();
    this.buffer = buffer;
  }

  private applyPointerCursor(): void {
    if (!this.pointer?.alive || this.enterSerial === null) return;
    if (this.visible && this.surface) {
      this.pointer.setCursor(this.enterSerial, this.surface, this.hotX, this.hotY);
    } else {
      this.pointer.setCursor(this.enterSerial, null, 0, 0);
    }
  }

  destroy(): void {
    if (this.subsurface?.alive) this.subsurface.destroy();
    if (this.surface?.alive) this.surface.destroy();
    if (this.buffer?.alive) this.buffer.destroy();
    this.subsurface = null;
    this.surface = null;
    this.buffer = null;
  }
}
