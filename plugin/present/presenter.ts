/**
 * The present layer: connects framebuffer sources to a Wayland compositor. Each enabled guest
 * head gets a toplevel; each scanout gets a wl_buffer on the best path the host allows
 * (dma-buf, else wl_shm on the guest memfd, else a counted copy), decided once per buffer and
 * logged once per reason; each flush becomes damage_buffer + commit, paced by frame callbacks.
 *
 * The presenter owns and wires the parts; it is not on the frame path. Frames flow one way:
 * source events -> `SourceBinding` (binding.ts) -> `BufferFactory` (buffer-factory.ts, where
 * dma-bufs are made) and the head's `HeadWindow` (window.ts). The presenter itself handles the
 * seat: pointer and keyboard focus on the windows, forwarded to the guests' input devices.
 */
import { fd } from '../../native/fd.js';
import type {
  WlKeyboardProxy,
  WlPointerProxy,
  WlSurfaceProxy,
} from '../../build/protocols/index.js';
import type { Logger } from '../common/log.js';
import type { GuestInputSink } from '../guest-input.js';
import type { PluginStats } from '../stats.js';
import { HeadViews, SourceBinding, type HeadView, type NamedSource } from './binding.js';
import { BufferFactory, type UdmabufChoice } from './buffer-factory.js';
import { copyLimits, type CopyLimits } from './copy-budget.js';
import type { WaylandClient } from './connection.js';
import type { HeadCursor } from './cursor.js';
import { bindGlobals, type PresentGlobals } from './globals.js';
import { InputForwarder } from './input.js';
import type { HeadWindow } from './window.js';

export type { NamedSource } from './binding.js';

export interface PresenterOptions {
  stats: PluginStats;
  log: Logger;
  /**
   * udmabuf: a device path to open, false to never use it (forces the wl_shm fallback), or an
   * exporter to use (the presenter then does not dispose it).
   */
  udmabuf?: UdmabufChoice;
  /** Highest linux-dmabuf version to use (default 4). */
  maxDmabufVersion?: number;
  /** Input devices by guest name: every window of that guest feeds its sink. */
  inputs?: ReadonlyMap<string, GuestInputSink>;
  /** Per-source limits of the copy fallback's buffers (defaults: DEFAULT_COPY_LIMITS). */
  copyLimits?: Partial<CopyLimits>;
  /**
   * Show contiguous guest RAM through a wl_shm pool on the guest memfd (no copy) although the
   * compositor then sees the guest RAM before the framebuffer. Default false: copied instead.
   */
  shmOnGuestRam?: boolean;
}

export class Presenter {
  private readonly bindings: SourceBinding[] = [];
  /** Every head's view; bindings open and close them, input and cursor focus read them. */
  private readonly views: HeadViews;
  /** Where wl_buffers (and dma-bufs) are made; the bindings ask it. */
  private readonly buffers: BufferFactory;
  private pointer: WlPointerProxy | null = null;
  private pointerView: HeadView | null = null;
  private keyboard: WlKeyboardProxy | null = null;
  private readonly inputs: ReadonlyMap<string, GuestInputSink>;
  /** Pointer and keyboard input on guestfb's windows, to the guests' input devices. */
  readonly input: InputForwarder;
  private nextSourceIndex = 0;
  private closed = false;
  private readonly copyLimits: CopyLimits;
  readonly stats: PluginStats;
  readonly log: Logger;

  private constructor(
    readonly client: WaylandClient,
    readonly globals: PresentGlobals,
    options: PresenterOptions,
  ) {
    this.stats = options.stats;
    this.log = options.log;
    this.inputs = options.inputs ?? new Map();
    this.input = new InputForwarder(
      (surface) => this.views.bySurface(surface)?.input ?? null,
      () => (this.pointer?.version ?? 0) >= 5,
    );
    this.views = new HeadViews(globals, this.stats, (view) => this.forgetView(view));
    this.copyLimits = copyLimits(options.copyLimits);
    this.buffers = new BufferFactory(globals, this.stats, this.log, options.udmabuf, {
      shmOnGuestRam: options.shmOnGuestRam ?? false,
    });
    for (const warning of globals.warnings) this.log('warn', `compositor: ${warning}`);
    this.watchSeat();
  }

  /** Why udmabuf cannot be used at all on this host, or null. */
  get udmabufRefusal(): string | null {
    return this.buffers.udmabufRefusal;
  }

  /** Binds the globals on a connected client (the caller keeps owning the client). */
  static async create(client: WaylandClient, options: PresenterOptions): Promise<Presenter> {
    const globals = await bindGlobals(client, { maxDmabufVersion: options.maxDmabufVersion });
    try {
      return new Presenter(client, globals, options);
    } catch (error) {
      globals.destroy();
      throw error;
    }
  }

  /** Starts showing a source's heads. Returns a function that stops (windows go away). */
  addSource(named: NamedSource): () => void {
    const binding = new SourceBinding(this.nextSourceIndex++, named, {
      views: this.views,
      buffers: this.buffers,
      log: this.log,
      input: named.input ?? this.inputs.get(named.name) ?? null,
      copyLimits: this.copyLimits,
      stats: this.stats,
    });
    this.bindings.push(binding);
    this.client.flush();
    return () => {
      const at = this.bindings.indexOf(binding);
      if (at < 0) return;
      this.bindings.splice(at, 1);
      binding.detach();
      this.client.flush();
    };
  }

  /** Windows currently shown (tests and stats). */
  windows(): HeadWindow[] {
    return [...this.views].map((view) => view.window);
  }

  /** The heads' cursors, in the order of windows() (tests and stats). */
  cursors(): HeadCursor[] {
    return [...this.views].map((view) => view.cursor);
  }

  /** A view was closed: input and cursor focus on it end. */
  private forgetView(view: HeadView): void {
    if (view.input) this.input.forget((target) => target === view.input);
    if (this.pointerView === view) this.pointerView = null;
  }

  private watchSeat(): void {
    const seat = this.globals.seat;
    if (!seat) return;
    const onCapabilities = (capabilities: number): void => {
      const hasPointer = (capabilities & 1) !== 0;
      if (hasPointer && !this.pointer) {
        const input = this.input;
        this.pointer = seat.getPointer().setListener({
          enter: (serial, surface, x, y) => {
            this.pointerEnter(serial, surface);
            input.pointerEnter(surface, x, y);
          },
          leave: () => {
            this.pointerView?.cursor.pointerFocus(this.pointer!, null);
            this.pointerView = null;
            input.pointerLeave();
          },
          motion: (_time, x, y) => input.motion(x, y),
          button: (_serial, _time, button, state) => input.button(button, state === 1),
          axis: (_time, axis, value) => input.axis(axis, value),
          axisDiscrete: (axis, discrete) => input.axisDiscrete(axis, discrete),
          axisValue120: (axis, value120) => input.axisValue120(axis, value120),
          frame: () => input.frame(),
        });
      } else if (!hasPointer && this.pointer) {
        if (this.pointer.alive) {
          if (this.pointer.version >= 3) this.pointer.release();
          else this.pointer.destroyProxy();
        }
        this.pointer = null;
        for (const view of this.views) view.cursor.pointerGone();
        this.input.pointerLeave();
      }
      const hasKeyboard = (capabilities & 2) !== 0;
      if (hasKeyboard && !this.keyboard) {
        const input = this.input;
        this.keyboard = seat.getKeyboard().setListener({
          // The guest has its own keymap: evdev codes pass through, the host keymap is unused.
          keymap: (_format, keymapFd) => fd.close(keymapFd),
          enter: (_serial, surface) => input.keyboardEnter(surface),
          leave: () => input.keyboardLeave(),
          key: (_serial, _time, key, state) => input.key(key, state),
        });
      } else if (!hasKeyboard && this.keyboard) {
        this.input.keyboardLeave();
        this.releaseKeyboard();
      }
    };
    seat.setListener({ capabilities: onCapabilities });
    // The first capabilities event came during the bind roundtrip.
    onCapabilities(this.globals.seatCapabilities);
  }

  private releaseKeyboard(): void {
    if (this.keyboard?.alive) {
      if (this.keyboard.version >= 3) this.keyboard.release();
      else this.keyboard.destroyProxy();
    }
    this.keyboard = null;
  }

  private pointerEnter(serial: number, surface: WlSurfaceProxy | null): void {
    this.pointerView = null;
    if (!this.pointer || !surface) return;
    this.pointerView = this.views.bySurface(surface);
    this.pointerView?.cursor.pointerFocus(this.pointer, serial);
  }

  /** Stops every source binding, destroys windows and buffers, releases the globals. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.input.pointerLeave();
    this.input.keyboardLeave();
    for (const binding of this.bindings.splice(0)) binding.detach();
    this.releaseKeyboard();
    if (this.pointer?.alive) {
      if (this.pointer.version >= 3) this.pointer.release();
      else this.pointer.destroyProxy();
    }
    this.pointer = null;
    this.globals.destroy();
    this.buffers.dispose();
    this.client.flush();
  }
}
