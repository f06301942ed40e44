/**
 * A FramebufferSource view that treats a head as enabled while the guest shows something on it.
 *
 * Why: QEMU without a display UI reports only head 0 as enabled in its display info (nothing
 * calls its ui_info hook), and guestfb's backend passes that on. A guest told to drive more heads
 * (`video=Virtual-2:e`) sends SET_SCANOUT for head 1 anyway; the plugin only opens windows for
 * enabled heads. Until the backend itself follows the guest's scanouts, e2e tests wrap it with
 * this. Everything else (resources, fds, flushes, stats, close) passes straight through.
 */
import type {
  FramebufferSource,
  HeadInfo,
  Rect,
  ScanoutInfo,
  SourceEventName,
  SourceEvents,
  SourceListener,
  SourceResource,
  SourceStats,
} from '../../../plugin/sources/types.js';

type AnyListener = (...args: unknown[]) => void;

export class FollowScanouts implements FramebufferSource {
  private readonly listeners = new Map<SourceEventName, Set<AnyListener>>();
  private readonly shown = new Set<number>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(readonly inner: FramebufferSource) {
    const forward = <K extends SourceEventName>(event: K, extra?: SourceListener<K>) => {
      const listener = ((...args: SourceEvents[K]) => {
        extra?.(...args);
        this.emit(event, ...args);
      }) as SourceListener<K>;
      inner.on(event, listener);
      this.unsubscribe.push(() => inner.off(event, listener));
    };
    forward('headsChanged');
    forward('resourceCreated');
    forward('backingChanged');
    forward('resourceDestroyed');
    forward('flush');
    forward('cursor');
    forward('disconnected', () => this.shown.clear());
    // Not forwarded directly: a scanout on a head QEMU calls disabled first announces the head.
    const onScanout = (headId: number, scanout: ScanoutInfo | null) => {
      const before = this.enabledIds();
      if (scanout) this.shown.add(headId);
      else this.shown.delete(headId);
      if (this.enabledIds() !== before) this.emit('headsChanged', this.heads());
      this.emit('scanoutSet', headId, scanout);
    };
    inner.on('scanoutSet', onScanout);
    this.unsubscribe.push(() => inner.off('scanoutSet', onScanout));
  }

  private enabledIds(): string {
    return this.heads()
      .filter((h) => h.enabled)
      .map((h) => h.id)
      .join(',');
  }

  private emit<K extends SourceEventName>(event: K, ...args: SourceEvents[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }

  on<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as AnyListener);
    return this;
  }

  off<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    this.listeners.get(event)?.delete(listener as AnyListener);
    return this;
  }

  heads(): readonly HeadInfo[] {
    return this.inner
      .heads()
      .map((head) =>
        this.shown.has(head.id) && !head.enabled ? { ...head, enabled: true } : head,
      );
  }

  resource(id: number): SourceResource | undefined {
    return this.inner.resource(id);
  }

  scanout(headId: number): ScanoutInfo | null {
    return this.inner.scanout(headId);
  }

  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean {
    return this.inner.readPixels(resourceId, rect, target);
  }

  stats(): SourceStats {
    return this.inner.stats();
  }

  /** Detaches from the wrapped source and closes it. */
  close(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.inner.close();
  }
}
