/**
 * The guest's cursor. With a wl_pointer the host pointer shows the guest cursor image while it
 * is over the head's window (wl_pointer.set_cursor, with the hotspot). Without a pointer (a
 * headless or seatless compositor) the image goes on a subsurface at the guest's cursor
 * position, so it appears in the window like the guest drew it. Without wl_subcompositor
 * either, the cursor is skipped (said once in the log). When the pointer first enters, the
 * subsurface goes: its surface has the subsurface role and set_cursor needs a surface without
 * one (a compositor ends the connection otherwise), so a fresh surface takes the image.
 *
 * A guest can send cursor updates far faster than a compositor reads them (1,400 in one loop
 * turn overflowed the socket, and libwayland-client 1.21 treats a full socket while queuing as
 * fatal: every guest's window went). So updates are coalesced: `update` only records the latest
 * position and image, and at most one batch of requests per head goes out per loop turn, none
 * while the socket is full (back-pressure: it waits and retries). Images are written into one
 * reused memfd with two wl_buffers (double-buffered on wl_buffer.release), not a new memfd and
 * pool per image.
 */
import { fd } from '../../native/fd.js';
import type {
  WlBufferProxy,
  WlPointerProxy,
  WlShmPoolProxy,
  WlSubsurfaceProxy,
  WlSurfaceProxy,
} from '../../build/protocols/index.js';
import type { CursorImage, CursorUpdate } from '../sources/types.js';
import { DrmFormat, drmToShmFormat } from '../common/formats.js';
import type { PresentGlobals } from './globals.js';

export type CursorMode = 'pointer' | 'subsurface' | 'none';

/** Largest cursor accepted (virtio-gpu cursors are 64x64). */
const MAX_CURSOR = 512;
/** Retry delay while the socket to the compositor is full. */
const BLOCKED_RETRY_MS = 5;

/** Two wl_buffers of one size and format in one memfd, reused for every image of that shape. */
class CursorBuffers {
  readonly slots: { buffer: WlBufferProxy; busy: boolean; offset: number }[] = [];
  private readonly pixels: Uint8Array;
  private readonly mapping: ArrayBuffer;
  private readonly pool: WlShmPoolProxy;

  constructor(
    globals: PresentGlobals & { shm: NonNullable<PresentGlobals['shm']> },
    readonly width: number,
    readonly height: number,
    readonly fourcc: number,
  ) {
    const slotSize = width * height * 4;
    const memfd = fd.memfdCreate('guestfb-cursor', false);
    try {
      fd.ftruncate(memfd, slotSize * 2);
      this.mapping = fd.mmap(memfd, 0, slotSize * 2, true);
      this.pixels = new Uint8Array(this.mapping);
      this.pool = globals.shm.createPool(memfd, slotSize * 2);
    } finally {
      fd.close(memfd); // the pool and the mapping keep the memory
    }
    for (const offset of [0, slotSize]) {
      const buffer = this.pool.createBuffer(
        offset,
        width,
        height,
        width * 4,
        drmToShmFormat(fourcc) as never,
      );
      const slot = { buffer, busy: false, offset };
      buffer.setListener({ release: () => (slot.busy = false) });
      this.slots.push(slot);
    }
  }

  fits(image: CursorImage): boolean {
    return (
      image.width === this.width && image.height === this.height && image.fourcc === this.fourcc
    );
  }

  /** Writes the image into a free slot and returns its buffer (now busy), or null if none is free. */
  fill(image: CursorImage): WlBufferProxy | null {
    const slot = this.slots.find((s) => !s.busy);
    if (!slot) return null;
    const size = this.width * this.height * 4;
    this.pixels.set(image.pixels.subarray(0, size), slot.offset);
    slot.busy = true;
    return slot.buffer;
  }

  destroy(): void {
    for (const slot of this.slots) if (slot.buffer.alive) slot.buffer.destroy();
    if (this.pool.alive) this.pool.destroy();
    fd.munmap(this.mapping);
  }
}

/** Same size, format, hotspot and pixels. */
function sameImage(a: CursorImage, b: CursorImage): boolean {
  if (
    a.width !== b.width ||
    a.height !== b.height ||
    a.fourcc !== b.fourcc ||
    a.hotX !== b.hotX ||
    a.hotY !== b.hotY
  ) {
    return false;
  }
  const size = a.width * a.height * 4;
  return Buffer.compare(a.pixels.subarray(0, size), b.pixels.subarray(0, size)) === 0;
}

export class HeadCursor {
  private surface: WlSurfaceProxy | null = null;
  private subsurface: WlSubsurfaceProxy | null = null;
  private buffers: CursorBuffers | null = null;
  /** The latest position, and the latest image change (undefined: none), not yet sent. */
  private pending: { x: number; y: number; image?: CursorImage | null } | null = null;
  private scheduled: NodeJS.Immediate | NodeJS.Timeout | null = null;
  private destroyed = false;
  /** Updates received and batches sent (coalescing ratio for stats and tests). */
  readonly counters = { updates: 0, batches: 0, deferredWhileBlocked: 0 };
  private hotX = 0;
  private hotY = 0;
  private visible = false;
  /** The image shown now (re-attached when the subsurface gives way to the pointer). */
  private image: CursorImage | null = null;
  /** The role the surface has been given (null: none yet, or no surface). */
  private surfaceRole: 'cursor' | 'subsurface' | null = null;
  /** The latest position sent (the hotspot, in head pixels). */
  private x = 0;
  private y = 0;
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
    this.takeRole('cursor');
    if (serial !== null) this.applyPointerCursor();
  }

  /** The seat's pointer went away. */
  pointerGone(): void {
    this.pointer = null;
    this.enterSerial = null;
    this.takeRole('subsurface');
  }

  /**
   * A surface keeps its role until destroyed, and set_cursor on a subsurface's surface (or the
   * reverse) is a protocol error that ends the connection. So when the mode changes, the
   * surface goes and the image is sent again on a new one.
   */
  private takeRole(role: 'cursor' | 'subsurface'): void {
    if (this.surfaceRole === null || this.surfaceRole === role) return;
    const wasSubsurface = this.subsurface !== null;
    if (this.subsurface?.alive) this.subsurface.destroy();
    if (this.surface?.alive) this.surface.destroy();
    this.subsurface = null;
    this.surface = null;
    this.surfaceRole = null;
    if (wasSubsurface) this.commitParent(); // it leaves the window on the parent's commit
    if (this.visible && this.image) {
      this.visible = false;
      const pending = this.pending ?? { x: this.x, y: this.y };
      pending.image ??= this.image;
      this.pending = pending;
      this.schedule(false);
    }
  }

  /**
   * Records an update (sent with the others of this loop turn, once the socket has room).
   * Returns false when it was ignored (no way to show it, or a bad image).
   */
  update(update: CursorUpdate): boolean {
    if (this.destroyed || this.mode() === 'none') return false;
    const image = update.image;
    if (image) {
      const { width, height, pixels, fourcc } = image;
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
    }
    this.counters.updates++;
    const pending = this.pending ?? { x: update.x, y: update.y };
    pending.x = update.x;
    pending.y = update.y;
    if (image !== undefined) pending.image = image;
    this.pending = pending;
    this.schedule(false);
    return true;
  }

  private schedule(blocked: boolean): void {
    if (this.scheduled) return;
    this.scheduled = blocked
      ? setTimeout(() => this.sendPending(), BLOCKED_RETRY_MS)
      : setImmediate(() => this.sendPending());
  }

  /** Sends the coalesced update: at most one attach/commit and one position per turn. */
  private sendPending(): void {
    this.scheduled = null;
    const pending = this.pending;
    if (this.destroyed || !pending) return;
    if (this.globals.writeBlocked()) {
      this.counters.deferredWhileBlocked++;
      this.schedule(true);
      return;
    }
    const mode = this.mode();
    if (mode === 'none') {
      this.pending = null;
      return;
    }
    // The role first: some compositors (weston) ignore content committed before it.
    if (mode === 'subsurface') this.ensureSubsurface();
    // A guest re-sending the image it already shows (UPDATE_CURSOR in a loop) costs no upload,
    // no commit and, on the pointer, no set_cursor: the compositor redraws nothing for it.
    const unchanged =
      pending.image !== undefined &&
      pending.image !== null &&
      this.visible &&
      this.image !== null &&
      sameImage(this.image, pending.image);
    if (pending.image !== undefined && !unchanged) {
      if (pending.image === null) {
        this.visible = false;
        this.image = null;
        this.attach(null);
      } else {
        const buffer = this.bufferFor(pending.image);
        if (buffer === undefined) {
          // Both buffers are still with the compositor: wait for a release (keep the update).
          this.schedule(true);
          return;
        }
        this.hotX = pending.image.hotX;
        this.hotY = pending.image.hotY;
        this.image = pending.image;
        this.visible = buffer !== null;
        this.attach(buffer);
      }
    }
    this.pending = null;
    this.x = pending.x;
    this.y = pending.y;
    this.counters.batches++;
    if (mode === 'pointer') {
      // On the pointer only the image counts: the host pointer places it.
      if (pending.image !== undefined && !unchanged) this.applyPointerCursor();
    } else {
      this.subsurface?.setPosition(pending.x - this.hotX, pending.y - this.hotY);
      this.commitParent();
    }
  }

  /** The image in a reused buffer; null without wl_shm, undefined when both buffers are busy. */
  private bufferFor(image: CursorImage): WlBufferProxy | null | undefined {
    const shm = this.globals.shm;
    if (!shm) return null;
    if (!this.buffers?.fits(image)) {
      this.buffers?.destroy();
      this.buffers = null;
      this.buffers = new CursorBuffers(
        { ...this.globals, shm },
        image.width,
        image.height,
        image.fourcc,
      );
    }
    return this.buffers.fill(image) ?? undefined;
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
    this.surfaceRole = 'subsurface';
  }

  private attach(buffer: WlBufferProxy | null): void {
    const surface = this.ensureSurface();
    surface.attach(buffer, 0, 0);
    if (buffer) surface.damageBuffer(0, 0, 0x7fffffff, 0x7fffffff);
    surface.commit();
  }

  private applyPointerCursor(): void {
    if (!this.pointer?.alive || this.enterSerial === null) return;
    if (this.visible && this.surface) {
      this.pointer.setCursor(this.enterSerial, this.surface, this.hotX, this.hotY);
      this.surfaceRole = 'cursor';
    } else {
      this.pointer.setCursor(this.enterSerial, null, 0, 0);
    }
  }

  destroy(): void {
    this.destroyed = true;
    if (this.scheduled) {
      clearTimeout(this.scheduled as NodeJS.Timeout);
      clearImmediate(this.scheduled as NodeJS.Immediate);
      this.scheduled = null;
    }
    this.pending = null;
    if (this.subsurface?.alive) this.subsurface.destroy();
    if (this.surface?.alive) this.surface.destroy();
    this.buffers?.destroy();
    this.subsurface = null;
    this.surface = null;
    this.surfaceRole = null;
    this.buffers = null;
    this.image = null;
  }
}
