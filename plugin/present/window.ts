/**
 * One toplevel window per guest head: wl_surface + xdg_surface + xdg_toplevel titled
 * "<guest> — <head>". The surface shows the head's current buffer at the guest's mode size
 * (a guest mode change attaches a buffer of the new size and the window follows it). A size the
 * compositor suggests in xdg_toplevel.configure is passed on as a request (events.resizeRequested:
 * the source offers it to the guest as its preferred mode), never applied by scaling: that would
 * make the compositor resample every frame. Flushes
 * become damage_buffer + commit through the FramePacer: no pixel is touched on the zero-copy
 * paths, and frame callbacks pace commits when the guest is faster than the display.
 */
import type {
  WlCallbackProxy,
  WlSurfaceProxy,
  XdgSurfaceProxy,
  XdgToplevelProxy,
} from '../../build/protocols/index.js';
import type { PluginStats } from '../stats.js';
import type { PresentedBuffer } from './buffers.js';
import type { DamageAccumulator } from './damage.js';
import type { PresentGlobals } from './globals.js';
import { FramePacer, type PacerOptions, type RectLike } from './pacer.js';

export interface WindowEvents {
  /** The compositor asked to close the window (xdg_toplevel.close). */
  close(): void;
  /** The window committed (for the subsurface cursor, which moves on parent commits). */
  committed?(): void;
  /**
   * A frame callback fired (after the pacer committed any merged damage). Only paced commits ask
   * for one (see pacer.ts).
   */
  frameDone?(): void;
  /**
   * The compositor configured the window with a size (not 0x0) other than the shown buffer's and
   * the last one requested: offer it to the guest.
   */
  resizeRequested?(width: number, height: number): void;
}

export class HeadWindow {
  readonly surface: WlSurfaceProxy;
  private readonly xdgSurface: XdgSurfaceProxy | null;
  private readonly toplevel: XdgToplevelProxy | null;
  readonly pacer: FramePacer;
  /** The toplevel's title ("<guest> — <head>"): how tests and logs tell windows apart. */
  title: string;
  private current: PresentedBuffer | null = null;
  private configured = false;
  /** A commit without damage was asked for while a frame was in flight. */
  private commitWanted = false;
  private frameCallback: WlCallbackProxy | null = null;
  /** One listener object for every frame callback: nothing allocated per frame for it. */
  private readonly frameListener = { done: () => this.onFrameDone() };
  private destroyed = false;
  /** Size the compositor last suggested (0 = client's choice); informational. */
  suggestedWidth = 0;
  suggestedHeight = 0;
  configureCount = 0;
  /** The last size passed to events.resizeRequested (a repeated configure asks once). */
  private requestedWidth = 0;
  private requestedHeight = 0;

  constructor(
    globals: PresentGlobals,
    stats: PluginStats,
    title: string,
    private readonly events: WindowEvents,
    pacing: PacerOptions = {},
  ) {
    this.title = title;
    this.surface = globals.compositor.createSurface();
    this.pacer = new FramePacer(stats, this, 1, 1, pacing);
    if (globals.wmBase) {
      this.xdgSurface = globals.wmBase.getXdgSurface(this.surface);
      this.xdgSurface.setListener({
        configure: (serial) => {
          if (!this.xdgSurface?.alive) return;
          this.xdgSurface.ackConfigure(serial);
          this.configureCount++;
          this.maybeRequestResize();
          if (!this.configured) {
            this.configured = true;
            this.updateReady();
          }
        },
      });
      this.toplevel = this.xdgSurface.getToplevel();
      this.toplevel.setListener({
        configure: (width, height) => {
          this.suggestedWidth = width;
          this.suggestedHeight = height;
        },
        close: () => this.events.close(),
      });
      this.toplevel.setTitle(title);
      this.toplevel.setAppId('guestfb');
      // The initial commit without a buffer asks for the first configure.
      this.surface.commit();
    } else {
      // No shell: a bare surface (some test compositors); nothing to wait for.
      this.xdgSurface = null;
      this.toplevel = null;
      this.configured = true;
    }
  }

  get buffer(): PresentedBuffer | null {
    return this.current;
  }

  private maybeRequestResize(): void {
    const width = this.suggestedWidth;
    const height = this.suggestedHeight;
    if (width <= 0 || height <= 0) return;
    if (width === this.requestedWidth && height === this.requestedHeight) return;
    if (this.current && this.current.width === width && this.current.height === height) return;
    this.requestedWidth = width;
    this.requestedHeight = height;
    this.events.resizeRequested?.(width, height);
  }

  get isConfigured(): boolean {
    return this.configured;
  }

  setTitle(title: string): void {
    this.title = title;
    if (this.toplevel?.alive) this.toplevel.setTitle(title);
  }

  /**
   * Shows a buffer (or nothing). The buffer is attached with each commit; a new one is fully damaged;
   * the window does not own it (the presenter's cache does).
   */
  show(buffer: PresentedBuffer | null): void {
    if (this.destroyed) return;
    if (buffer === this.current) return;
    this.current = buffer;
    if (buffer === null) {
      // Unmap. xdg-shell then wants the initial commit again and a new configure before the
      // next buffer.
      this.pacer.stop();
      this.surface.attach(null, 0, 0);
      this.surface.commit();
      if (this.xdgSurface) {
        this.configured = false;
        this.surface.commit();
      }
      this.updateReady();
      return;
    }
    this.pacer.reset(buffer.width, buffer.height, buffer.path !== 'shm-copy');
    this.updateReady();
  }

  /** Guest damage on the shown buffer. */
  flush(rects: readonly RectLike[]): void {
    if (this.destroyed || this.current === null) return;
    this.pacer.flush(rects);
  }

  private updateReady(): void {
    this.pacer.setReady(this.configured && this.current !== null && !this.destroyed);
  }

  /** CommitTarget: damage, frame callback (when the pacer needs one), commit. */
  commit(damage: DamageAccumulator, frameCallback: boolean): number {
    const buffer = this.current;
    if (buffer === null) return 0;
    const copied = buffer.prepare(damage);
    // Attach on every commit, not only when the buffer changes: a compositor that released the
    // buffer (e.g. after uploading shm contents) only reads it again when it is attached again.
    // (frame before attach: all of them are pending state until the commit)
    if (frameCallback) this.frameCallback = this.surface.frame().setListener(this.frameListener);
    // attach + damage_buffer per rectangle + commit in one call into the addon.
    this.surface.native.commitFrame(buffer.wlBuffer.native, damage.boxArray, damage.count);
    this.commitWanted = false;
    buffer.markCommitted();
    this.events.committed?.();
    return copied;
  }

  /** Commits without new damage (e.g. to move a subsurface); while a frame is in flight, once
   * it is done (a guest that sends no more frames still gets its cursor moved). */
  commitIfIdle(): void {
    if (this.destroyed || !this.configured) return;
    if (this.pacer.waitingForFrame) {
      this.commitWanted = true;
      return;
    }
    this.surface.commit();
    this.commitWanted = false;
  }

  private onFrameDone(): void {
    this.frameCallback?.destroyProxy();
    this.frameCallback = null;
    this.pacer.frameDone();
    this.events.frameDone?.();
    if (this.commitWanted) this.commitIfIdle();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pacer.stop();
    this.frameCallback?.destroyProxy();
    this.frameCallback = null;
    if (this.toplevel?.alive) this.toplevel.destroy();
    if (this.xdgSurface?.alive) this.xdgSurface.destroy();
    if (this.surface.alive) this.surface.destroy();
    this.current = null;
  }
}
