/**
 * The present layer: connects framebuffer sources to a Wayland compositor. Each enabled guest
 * head gets a toplevel; each scanout gets a wl_buffer on the best path the host allows
 * (dma-buf, else wl_shm on the guest memfd, else a counted copy), decided once per buffer and
 * logged once per reason; each flush becomes damage_buffer + commit, paced by frame callbacks.
 */
import { fd } from '../../native/fd.js';
import { UdmabufExporter, isUdmabufError } from '../dmabuf/index.js';
import type {
  WlKeyboardProxy,
  WlPointerProxy,
  WlSurfaceProxy,
} from '../../build/protocols/index.js';
import { headLayout, type GuestInputSink } from '../guest-input.js';
import type {
  CursorUpdate,
  FramebufferSource,
  HeadInfo,
  Rect,
  ScanoutInfo,
  SourceEventName,
  SourceListener,
  SourceResource,
} from '../sources/types.js';
import type { PluginStats } from '../stats.js';
import { DmabufBuffer, ShmCopyBuffer, ShmDirectBuffer, type PresentedBuffer } from './buffers.js';
import type { WaylandClient } from './connection.js';
import { HeadCursor } from './cursor.js';
import { fourccName } from '../common/formats.js';
import { bindGlobals, type PresentGlobals } from './globals.js';
import {
  backingBeyondFds,
  planDmabuf,
  planShm,
  validateGuestBuffer,
  type GuestBuffer,
} from './plan.js';
import { InputForwarder, type InputTarget } from './input.js';
import { HeadWindow } from './window.js';

export type Logger = (message: string) => void;

export interface PresenterOptions {
  stats: PluginStats;
  log: Logger;
  /**
   * udmabuf: a device path to open, false to never use it (forces the wl_shm fallback), or an
   * exporter to use (the presenter then does not dispose it).
   */
  udmabuf?: string | false | UdmabufExporter;
  /** Highest linux-dmabuf version to use (default 4). */
  maxDmabufVersion?: number;
  /** Input devices by guest name: every window of that guest feeds its sink. */
  inputs?: ReadonlyMap<string, GuestInputSink>;
}

/** A source with the guest name used in window titles (and, optionally, its input device). */
export interface NamedSource {
  name: string;
  source: FramebufferSource;
  /** Where input on this guest's windows goes (default: the presenter's input of `name`). */
  input?: GuestInputSink;
}

interface CachedBuffer {
  /** Layout the buffer was made for; a different scanout layout needs a new buffer. */
  key: string;
  buffer: PresentedBuffer;
}

/** Resource ids are per source; the exporter's cache needs them unique across sources. */
const RESOURCE_KEY_SPACE = 2 ** 32;

class HeadView {
  readonly window: HeadWindow;
  readonly cursor: HeadCursor;
  /** wl_buffers of the resources this head has shown, by resource id. */
  readonly buffers = new Map<number, CachedBuffer>();
  scanout: ScanoutInfo | null = null;
  /** Set when the shown resource lost its buffer (backing changed); rebuilt on the next flush. */
  stale = false;
  /**
   * The invalidated buffer still on screen: kept (not unmapped) until its replacement is shown,
   * then destroyed. Safe: the compositor's dma-buf or pool keeps the old pages alive.
   */
  retired: PresentedBuffer | null = null;

  /** Shows `buffer` and destroys a retired one. */
  replace(buffer: PresentedBuffer | null): void {
    this.window.show(buffer);
    if (this.retired && this.retired !== buffer) this.retired.destroy();
    this.retired = null;
  }

  constructor(
    readonly head: HeadInfo,
    window: HeadWindow,
    cursor: HeadCursor,
    readonly input: InputTarget | null,
  ) {
    this.window = window;
    this.cursor = cursor;
  }
}

class SourceBinding {
  readonly views = new Map<number, HeadView>();
  private readonly generations = new Map<number, number>();
  private readonly listeners: { off(): void }[] = [];
  private readonly loggedProblems = new Set<string>();

  constructor(
    readonly presenter: Presenter,
    readonly index: number,
    readonly named: NamedSource,
  ) {
    const source = named.source;
    const listen = <K extends SourceEventName>(event: K, listener: SourceListener<K>) => {
      source.on(event, listener);
      this.listeners.push({ off: () => source.off(event, listener) });
    };
    listen('headsChanged', (heads) => this.syncHeads(heads));
    listen('scanoutSet', (headId, scanout) => this.setScanout(headId, scanout));
    listen('flush', (headId, damage) => this.flush(headId, damage));
    listen('backingChanged', (resource) => this.invalidate(resource.id));
    listen('resourceDestroyed', (resourceId) => this.invalidate(resourceId, true));
    listen('cursor', (update) => this.cursor(update));
    listen('disconnected', (reason) => {
      this.presenter.log(`${named.name}: source disconnected (${reason})`);
      this.clear();
    });
    this.syncHeads(source.heads());
  }

  private title(head: HeadInfo): string {
    return `${this.named.name} — ${head.name || `head ${head.id}`}`;
  }

  private logOnce(key: string, message: string): void {
    if (this.loggedProblems.has(key)) return;
    this.loggedProblems.add(key);
    this.presenter.log(message);
  }

  syncHeads(heads: readonly HeadInfo[]): void {
    const wanted = new Set<number>();
    for (const head of heads) {
      if (!head.enabled) continue;
      wanted.add(head.id);
      const existing = this.views.get(head.id);
      if (existing) {
        if (existing.head.name !== head.name) existing.window.setTitle(this.title(head));
        continue;
      }
      const view = this.presenter.createView(
        head,
        this.title(head),
        this.inputTarget(head.id),
        () => {
          this.presenter.log(`${this.title(head)}: window closed by the compositor`);
          this.removeView(head.id);
        },
        (width, height) => {
          const source = this.named.source;
          const offered = source.requestHeadSize?.(head.id, width, height) ?? false;
          this.presenter.log(
            `${this.title(head)}: window configured to ${width}x${height}; ` +
              (offered ? 'offered to the guest' : 'the source cannot offer sizes to the guest'),
          );
        },
      );
      this.views.set(head.id, view);
      this.setScanout(head.id, this.named.source.scanout(head.id));
    }
    for (const headId of [...this.views.keys()]) {
      if (!wanted.has(headId)) this.removeView(headId);
    }
  }

  /** Input on head `headId`'s window: the guest's sink, placed in its combined head layout. */
  private inputTarget(headId: number): InputTarget | null {
    const sink = this.named.input ?? this.presenter.inputFor(this.named.name);
    if (!sink) return null;
    const source = this.named.source;
    return {
      sink,
      place: () => {
        const layout = headLayout(source.heads());
        const rect = layout.rects.find((r) => r.id === headId);
        if (!rect) return null;
        return { x: rect.x, y: rect.y, layoutWidth: layout.width, layoutHeight: layout.height };
      },
    };
  }

  private removeView(headId: number): void {
    const view = this.views.get(headId);
    if (!view) return;
    this.views.delete(headId);
    // Destroying the surface unmaps it; buffers go after it.
    view.cursor.destroy();
    view.window.destroy();
    view.retired?.destroy();
    view.retired = null;
    for (const cached of view.buffers.values()) cached.buffer.destroy();
    view.buffers.clear();
    this.presenter.forgetView(view);
  }

  setScanout(headId: number, scanout: ScanoutInfo | null): void {
    const view = this.views.get(headId);
    if (!view) return;
    view.scanout = scanout;
    view.stale = false;
    view.replace(scanout ? this.bufferFor(view, scanout) : null);
  }

  flush(headId: number, damage: readonly Rect[]): void {
    const view = this.views.get(headId);
    if (!view || !view.scanout) return;
    if (view.stale || view.window.buffer === null) {
      view.stale = false;
      view.replace(this.bufferFor(view, view.scanout));
    }
    view.window.flush(damage);
  }

  private cursor(update: CursorUpdate): void {
    const view = this.views.get(update.headId);
    if (!view) return;
    if (!view.cursor.update(update)) {
      this.logOnce(
        `cursor-${view.cursor.mode()}`,
        view.cursor.mode() === 'none'
          ? `${this.named.name}: guest cursor not shown (no wl_pointer and no wl_subcompositor)`
          : `${this.named.name}: guest cursor image refused (bad size or format)`,
      );
    }
  }

  /** Each source has its own 2^32 keys; a resource id outside u32 would reach the next one's. */
  private exporterKey(resourceId: number): number {
    if (!Number.isInteger(resourceId) || resourceId < 0 || resourceId >= RESOURCE_KEY_SPACE) {
      throw new RangeError(`${this.named.name}: resource id ${resourceId} is not a u32`);
    }
    return this.index * RESOURCE_KEY_SPACE + resourceId;
  }

  /** Backing changed or the resource is gone: drop its buffers (and its dma-buf). */
  invalidate(resourceId: number, destroyed = false): void {
    if (destroyed) this.generations.delete(resourceId);
    else this.generations.set(resourceId, (this.generations.get(resourceId) ?? 0) + 1);
    for (const view of this.views.values()) {
      const cached = view.buffers.get(resourceId);
      if (!cached) continue;
      view.buffers.delete(resourceId);
      if (view.window.buffer === cached.buffer) {
        // Keep it on screen until the next flush brings its replacement.
        view.retired?.destroy();
        view.retired = cached.buffer;
        view.stale = true;
      } else {
        cached.buffer.destroy();
      }
    }
    this.presenter.releaseDmabuf(this.exporterKey(resourceId));
  }

  /** The wl_buffer for a scanout, from the cache or made now; null when it cannot be shown. */
  private bufferFor(view: HeadView, scanout: ScanoutInfo): PresentedBuffer | null {
    const resource = this.named.source.resource(scanout.resourceId);
    if (!resource || resource.backing.length === 0) return null;
    const key = `${scanout.fourcc}:${scanout.modifier}:${scanout.width}x${scanout.height}:${scanout.stride}+${scanout.offset}`;
    const cached = view.buffers.get(resource.id);
    if (cached && cached.key === key) return cached.buffer;
    if (cached) {
      // A new layout for the same resource: the old buffer retires once the new one shows.
      view.buffers.delete(resource.id);
      if (view.window.buffer === cached.buffer) {
        view.retired?.destroy();
        view.retired = cached.buffer;
      } else {
        cached.buffer.destroy();
      }
    }
    const rect = scanout.rect;
    if (
      rect.x !== 0 ||
      rect.y !== 0 ||
      rect.width !== scanout.width ||
      rect.height !== scanout.height
    ) {
      this.logOnce(
        `rect-${view.head.id}`,
        `${this.title(view.head)}: the guest shows part of its buffer; guestfb shows all of it`,
      );
    }
    const buffer = this.presenter.makeBuffer(
      this.named.name,
      this.exporterKey(resource.id),
      this.generations.get(resource.id) ?? 0,
      toGuestBuffer(scanout, resource),
    );
    if (buffer) view.buffers.set(resource.id, { key, buffer });
    return buffer;
  }

  clear(): void {
    for (const headId of [...this.views.keys()]) this.removeView(headId);
    for (const resourceId of this.generations.keys()) {
      this.presenter.releaseDmabuf(this.exporterKey(resourceId));
    }
  }

  detach(): void {
    for (const listener of this.listeners) listener.off();
    this.listeners.length = 0;
    this.clear();
  }
}

function toGuestBuffer(scanout: ScanoutInfo, resource: SourceResource): GuestBuffer {
  return {
    width: scanout.width,
    height: scanout.height,
    stride: scanout.stride,
    offset: scanout.offset,
    format: scanout.fourcc,
    modifier: scanout.modifier,
    ranges: resource.backing,
  };
}

export class Presenter {
  private readonly bindings: SourceBinding[] = [];
  private readonly views = new Set<HeadView>();
  private exporter: UdmabufExporter | null = null;
  private readonly ownsExporter: boolean;
  /** Why udmabuf cannot be used at all on this host, or null. */
  readonly udmabufRefusal: string | null;
  private pointer: WlPointerProxy | null = null;
  private pointerView: HeadView | null = null;
  private keyboard: WlKeyboardProxy | null = null;
  private readonly inputs: ReadonlyMap<string, GuestInputSink>;
  /** Pointer and keyboard input on guestfb's windows, to the guests' input devices. */
  readonly input: InputForwarder;
  private nextSourceIndex = 0;
  private closed = false;
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
      (surface) => this.viewOf(surface)?.input ?? null,
      () => (this.pointer?.version ?? 0) >= 5,
    );
    const udmabuf = options.udmabuf ?? '/dev/udmabuf';
    if (udmabuf === false) {
      this.udmabufRefusal = 'udmabuf disabled by the caller';
      this.ownsExporter = false;
    } else if (udmabuf instanceof UdmabufExporter) {
      this.exporter = udmabuf;
      this.ownsExporter = false;
      this.udmabufRefusal = null;
    } else {
      this.ownsExporter = true;
      let refusal: string | null = null;
      try {
        this.exporter = UdmabufExporter.open({ devicePath: udmabuf });
      } catch (error) {
        refusal = isUdmabufError(error) ? error.message : String(error);
      }
      this.udmabufRefusal = refusal;
    }
    for (const warning of globals.warnings) this.log(`compositor: ${warning}`);
    this.watchSeat();
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
    const binding = new SourceBinding(this, this.nextSourceIndex++, named);
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

  /** @internal The input device of guest `name`, if it has one. */
  inputFor(name: string): GuestInputSink | null {
    return this.inputs.get(name) ?? null;
  }

  private viewOf(surface: WlSurfaceProxy): HeadView | null {
    for (const view of this.views) if (view.window.surface === surface) return view;
    return null;
  }

  /** @internal */
  createView(
    head: HeadInfo,
    title: string,
    input: InputTarget | null,
    onClose: () => void,
    onResize?: (width: number, height: number) => void,
  ): HeadView {
    let view: HeadView | null = null;
    const window = new HeadWindow(this.globals, this.stats, title, {
      close: onClose,
      ...(onResize ? { resizeRequested: onResize } : {}),
    });
    const cursor = new HeadCursor(this.globals, window.surface, () => window.commitIfIdle());
    view = new HeadView(head, window, cursor, input);
    this.views.add(view);
    return view;
  }

  /** @internal */
  forgetView(view: HeadView): void {
    if (view.input) this.input.forget((target) => target === view.input);
    this.views.delete(view);
    if (this.pointerView === view) this.pointerView = null;
  }

  /** @internal */
  releaseDmabuf(key: number): void {
    if (!this.exporter || this.exporter.disposed) return;
    this.exporter.release(key);
    this.stats.dmabufsLive = this.exporter.cachedCount;
  }

  private readonly loggedRefusals = new Set<string>();

  /** Logs a refusal once: a guest that flushes an unusable buffer 60 times a second must not
   * flood the log. Bounded, so a guest cannot grow it without limit either. */
  private logRefusal(message: string): void {
    if (this.loggedRefusals.has(message)) return;
    if (this.loggedRefusals.size >= 256) this.loggedRefusals.clear();
    this.loggedRefusals.add(message);
    this.log(message);
  }

  private noteFallback(guest: string, reason: string): void {
    if (this.stats.noteFallback(reason)) this.log(`${guest}: fallback: ${reason}`);
  }

  /** @internal Makes a wl_buffer on the best path; null (logged) when impossible. */
  makeBuffer(
    guest: string,
    key: number,
    generation: number,
    buffer: GuestBuffer,
  ): PresentedBuffer | null {
    let invalid = validateGuestBuffer(buffer);
    if (!invalid) {
      try {
        invalid = backingBeyondFds(buffer.ranges, (memfd) => fd.fdSize(memfd));
      } catch (error) {
        invalid = `cannot size its backing: ${(error as Error).message}`;
      }
    }
    if (invalid) {
      this.logRefusal(`${guest}: cannot show a ${fourccName(buffer.format)} buffer: ${invalid}`);
      return null;
    }
    const dmabufPlan = planDmabuf(buffer, this.globals.dmabufFormats, this.udmabufRefusal);
    let reason: string;
    if (dmabufPlan.path === 'dmabuf' && this.exporter && this.globals.dmabuf) {
      const needed = buffer.offset + buffer.stride * buffer.height;
      try {
        const exported = this.exporter.acquire(key, generation, buffer.ranges);
        this.stats.dmabufsLive = this.exporter.cachedCount;
        if (needed > exported.size) {
          reason = `the backing (${exported.size} bytes) is shorter than offset + stride × height (${needed})`;
        } else {
          return DmabufBuffer.create(
            this.globals.dmabuf,
            exported.fd,
            buffer,
            dmabufPlan.modifier,
            () => undefined,
          );
        }
      } catch (error) {
        if (!isUdmabufError(error)) throw error;
        reason = `udmabuf refused: ${error.message}`;
      }
    } else {
      reason = dmabufPlan.path === 'refused' ? dmabufPlan.reason : 'udmabuf unavailable';
    }
    if (!this.globals.shm) {
      this.logRefusal(
        `${guest}: cannot show the buffer: ${reason}; and the compositor has no wl_shm`,
      );
      return null;
    }
    const shmPlan = planShm(buffer, reason, this.globals.shmFormats);
    switch (shmPlan.path) {
      case 'unpresentable':
        this.logRefusal(`${guest}: cannot show the buffer: ${shmPlan.reason}`);
        return null;
      case 'shm-direct':
        this.noteFallback(guest, shmPlan.reason);
        return ShmDirectBuffer.create(
          this.globals.shm,
          shmPlan.memfd,
          shmPlan.poolSize,
          shmPlan.bufferOffset,
          buffer,
          shmPlan.shmFormat,
        );
      case 'shm-copy':
        this.noteFallback(guest, shmPlan.reason);
        return ShmCopyBuffer.create(
          this.globals.shm,
          buffer,
          shmPlan.shmFormat,
          shmPlan.bytesPerPixel,
        );
    }
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
    for (const view of this.views) {
      if (view.window.surface === surface) {
        this.pointerView = view;
        view.cursor.pointerFocus(this.pointer, serial);
        return;
      }
    }
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
    if (this.exporter && this.ownsExporter) this.exporter.dispose();
    this.stats.dmabufsLive = 0;
    this.exporter = null;
    this.client.flush();
  }
}
