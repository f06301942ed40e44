/**
 * One source on screen. Data flows one way: the source's events reach its `SourceBinding`, which
 * keeps one `HeadView` (window + cursor + the head's buffers) per enabled head and drives it; the
 * binding never calls back into the presenter, it uses the services the presenter hands it (the
 * view registry and the buffer factory).
 *
 * A head's buffer (and the dma-buf under it) is made at exactly two points:
 *   - `scanoutSet`: the head shows a resource, so its buffer is made now (or taken from the
 *     head's cache when the layout is the same);
 *   - `flush`, when the head has no buffer yet (the scanout came before the backing) or its
 *     buffer went stale (`backingChanged`): the old buffer stays on screen until this flush
 *     brings its replacement.
 * `backingChanged` and `resourceDestroyed` only drop buffers and release the dma-buf.
 */
import type { WlSurfaceProxy } from '../../build/protocols/index.js';
import type { Logger } from '../common/log.js';
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
import type { BufferFactory } from './buffer-factory.js';
import { CopyBudget, type CopyLimits } from './copy-budget.js';
import type { PresentedBuffer } from './buffers.js';
import { HeadCursor } from './cursor.js';
import type { PresentGlobals } from './globals.js';
import type { InputTarget } from './input.js';
import type { GuestBuffer } from './plan.js';
import { HeadWindow, type WindowEvents } from './window.js';

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

/** One guest head on screen: its window, its cursor and the buffers it has shown. */
export class HeadView {
  /** wl_buffers of the resources this head has shown, by resource id. */
  readonly buffers = new Map<number, CachedBuffer>();
  scanout: ScanoutInfo | null = null;
  /** Set when the shown resource lost its buffer (backing changed); rebuilt on the next flush. */
  stale = false;
  /**
   * The invalidated buffer still on screen: kept (not unmapped) until its replacement is shown,
   * then destroyed. Safe: the compositor's dma-buf or pool keeps the old pages alive.
   */
  private retired: PresentedBuffer | null = null;

  constructor(
    readonly head: HeadInfo,
    readonly window: HeadWindow,
    readonly cursor: HeadCursor,
    readonly input: InputTarget | null,
  ) {}

  /** Whether the next flush must bring a buffer first (none shown yet, or the shown one is stale). */
  get needsBuffer(): boolean {
    return this.scanout !== null && (this.stale || this.window.buffer === null);
  }

  /** Shows `buffer` (or nothing) and destroys a retired one. */
  show(buffer: PresentedBuffer | null): void {
    this.stale = false;
    this.window.show(buffer);
    if (this.retired && this.retired !== buffer) this.retired.destroy();
    this.retired = null;
  }

  /**
   * Forgets the cached buffer of `resourceId`. One on screen is retired (it stays until its
   * replacement shows); returns whether that was the case.
   */
  dropBuffer(resourceId: number): boolean {
    const cached = this.buffers.get(resourceId);
    if (!cached) return false;
    this.buffers.delete(resourceId);
    if (this.window.buffer !== cached.buffer) {
      cached.buffer.destroy();
      return false;
    }
    this.retired?.destroy();
    this.retired = cached.buffer;
    return true;
  }

  /** Destroys the surface (which unmaps it), then the buffers. */
  destroy(): void {
    this.cursor.destroy();
    this.window.destroy();
    this.retired?.destroy();
    this.retired = null;
    for (const cached of this.buffers.values()) cached.buffer.destroy();
    this.buffers.clear();
  }
}

/** Every head view of every source: the presenter routes input and cursor focus through it. */
export class HeadViews implements Iterable<HeadView> {
  private readonly views = new Set<HeadView>();

  /** @param closed called after a view is destroyed (the presenter drops its focus on it). */
  constructor(
    private readonly globals: PresentGlobals,
    private readonly stats: PluginStats,
    private readonly closed: (view: HeadView) => void,
  ) {}

  /** Opens a window (and its cursor) for `head`. */
  open(head: HeadInfo, title: string, input: InputTarget | null, events: WindowEvents): HeadView {
    const window = new HeadWindow(this.globals, this.stats, title, events);
    const cursor = new HeadCursor(this.globals, window.surface, () => window.commitIfIdle());
    const view = new HeadView(head, window, cursor, input);
    this.views.add(view);
    return view;
  }

  close(view: HeadView): void {
    if (!this.views.delete(view)) return;
    view.destroy();
    this.closed(view);
  }

  bySurface(surface: WlSurfaceProxy): HeadView | null {
    for (const view of this.views) if (view.window.surface === surface) return view;
    return null;
  }

  [Symbol.iterator](): Iterator<HeadView> {
    return this.views[Symbol.iterator]();
  }
}

/** What a binding uses; the presenter owns all of it. */
export interface BindingServices {
  views: HeadViews;
  buffers: BufferFactory;
  log: Logger;
  /** Where input on this source's windows goes, or null. */
  input: GuestInputSink | null;
  /** Limits of this source's copy buffers (defaults: DEFAULT_COPY_LIMITS). */
  copyLimits?: Partial<CopyLimits>;
  /** Where the copy budgets of all sources add up (the plugin's statistics). */
  stats?: PluginStats;
}

export class SourceBinding {
  private readonly views = new Map<number, HeadView>();
  /** Backing generation of each resource this binding has seen: the dma-buf cache key changes
   * with it, and clear() releases the dma-buf of each. */
  private readonly generations = new Map<number, number>();
  private readonly listeners: { off(): void }[] = [];
  private readonly loggedProblems = new Set<string>();
  /** This device's copy buffers (every head's), least recently shown first. */
  private readonly copies: CopyBudget;

  /** @param index this source's slot in the dma-buf key space (unique per presenter). */
  constructor(
    private readonly index: number,
    private readonly named: NamedSource,
    private readonly services: BindingServices,
  ) {
    this.copies = new CopyBudget(services.copyLimits, services.stats);
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
      this.services.log('info', `${named.name}: source disconnected (${reason})`);
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
    this.services.log('warn', message);
  }

  private syncHeads(heads: readonly HeadInfo[]): void {
    const wanted = new Set<number>();
    for (const head of heads) {
      if (!head.enabled) continue;
      wanted.add(head.id);
      const existing = this.views.get(head.id);
      if (existing) {
        if (existing.head.name !== head.name) existing.window.setTitle(this.title(head));
        continue;
      }
      const view = this.services.views.open(head, this.title(head), this.inputTarget(head.id), {
        close: () => {
          this.services.log('info', `${this.title(head)}: window closed by the compositor`);
          this.removeView(head.id);
        },
        resizeRequested: (width, height) => {
          const offered = this.named.source.requestHeadSize?.(head.id, width, height) ?? false;
          this.services.log(
            'info',
            `${this.title(head)}: window configured to ${width}x${height}; ` +
              (offered ? 'offered to the guest' : 'the source cannot offer sizes to the guest'),
          );
        },
      });
      this.views.set(head.id, view);
      this.setScanout(head.id, this.named.source.scanout(head.id));
    }
    for (const headId of [...this.views.keys()]) {
      if (!wanted.has(headId)) this.removeView(headId);
    }
  }

  /** Input on head `headId`'s window: the guest's sink, placed in its combined head layout. */
  private inputTarget(headId: number): InputTarget | null {
    const sink = this.services.input;
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
    this.services.views.close(view);
  }

  private setScanout(headId: number, scanout: ScanoutInfo | null): void {
    const view = this.views.get(headId);
    if (!view) return;
    view.scanout = scanout;
    view.show(scanout ? this.bufferFor(view, scanout) : null);
  }

  private flush(headId: number, damage: readonly Rect[]): void {
    const view = this.views.get(headId);
    if (!view || !view.scanout) return;
    if (view.needsBuffer) view.show(this.bufferFor(view, view.scanout));
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
  private invalidate(resourceId: number, destroyed = false): void {
    if (destroyed) this.generations.delete(resourceId);
    else this.generations.set(resourceId, (this.generations.get(resourceId) ?? 0) + 1);
    for (const view of this.views.values()) {
      // One on screen stays there until the next flush brings its replacement.
      if (view.dropBuffer(resourceId)) view.stale = true;
    }
    this.services.buffers.release(this.exporterKey(resourceId));
  }

  /** The wl_buffer for a scanout, from the head's cache or made now; null when it cannot be shown. */
  private bufferFor(view: HeadView, scanout: ScanoutInfo): PresentedBuffer | null {
    const resource = this.named.source.resource(scanout.resourceId);
    if (!resource || resource.backing.length === 0) return null;
    const key = `${scanout.fourcc}:${scanout.modifier}:${scanout.width}x${scanout.height}:${scanout.stride}+${scanout.offset}`;
    const cached = view.buffers.get(resource.id);
    if (cached && cached.key === key) {
      this.copies.touch(cached.buffer);
      return cached.buffer;
    }
    // A new layout for the same resource: the old buffer retires once the new one shows.
    if (cached) view.dropBuffer(resource.id);
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
    const exporterKey = this.exporterKey(resource.id);
    // Known from now on, so clear() releases its dma-buf even if no backing event ever came.
    const generation = this.generations.get(resource.id) ?? 0;
    this.generations.set(resource.id, generation);
    const resourceId = resource.id;
    const buffer = this.services.buffers.create(
      this.named.name,
      exporterKey,
      generation,
      toGuestBuffer(scanout, resource),
      {
        budget: this.copies,
        ownerFor: (made) => ({
          inUse: () => view.window.buffer === made,
          evict: () => {
            if (view.buffers.get(resourceId)?.buffer === made) view.dropBuffer(resourceId);
            else made.destroy();
          },
        }),
      },
    );
    if (buffer) view.buffers.set(resource.id, { key, buffer });
    return buffer;
  }

  /** Closes every window and releases every dma-buf of this source. */
  private clear(): void {
    for (const headId of [...this.views.keys()]) this.removeView(headId);
    for (const resourceId of this.generations.keys()) {
      this.services.buffers.release(this.exporterKey(resourceId));
    }
  }

  /** Stops listening to the source and clears. */
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
    ...(resource.displayMemoryOnly ? { displayMemoryOnly: true } : {}),
  };
}
