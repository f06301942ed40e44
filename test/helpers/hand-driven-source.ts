// A framebuffer source for presenter tests: its resources are PatternGuests (guest memory drawn
// with the documented pattern) and every event comes from the test, so a test decides exactly
// when a scanout, a flush or a backing change happens.
import { PatternGuest } from '../../plugin/sources/pattern.js';
import type {
  FramebufferSource,
  HeadInfo,
  ScanoutInfo,
  SourceEventName,
  SourceEvents,
  SourceListener,
  SourceResource,
} from '../../plugin/sources/types.js';

export abstract class HandDrivenSource implements FramebufferSource {
  readonly guests = new Map<number, PatternGuest>();
  protected headList: HeadInfo[];
  private readonly listeners = new Map<SourceEventName, Set<unknown>>();

  constructor(heads: HeadInfo[]) {
    this.headList = heads;
  }

  abstract scanout(headId: number): ScanoutInfo | null;

  on<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
    return this;
  }

  off<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  emit<K extends SourceEventName>(event: K, ...args: SourceEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      (listener as (...a: SourceEvents[K]) => void)(...args);
    }
  }

  listenerCount(): number {
    let count = 0;
    for (const set of this.listeners.values()) count += set.size;
    return count;
  }

  heads(): readonly HeadInfo[] {
    return this.headList;
  }

  /** Resource `id` as its guest's buffer describes it (`backing` overrides the ranges). */
  resource(id: number, backing?: (ranges: SourceResource['backing']) => SourceResource['backing']) {
    const guest = this.guests.get(id);
    if (!guest) return undefined;
    const buffer = guest.buffer();
    const resource: SourceResource = {
      id,
      kind: '2d',
      fourcc: buffer.format,
      modifier: buffer.modifier,
      width: buffer.width,
      height: buffer.height,
      stride: buffer.stride,
      offset: 0,
      size: buffer.ranges.reduce((sum, r) => sum + r.length, 0),
      backing: backing ? backing(buffer.ranges) : buffer.ranges,
    };
    return resource;
  }

  /** The whole of `resource` shown on head `headId`. */
  protected scanoutOf(headId: number, resource: SourceResource): ScanoutInfo {
    return {
      headId,
      resourceId: resource.id,
      fourcc: resource.fourcc,
      modifier: resource.modifier,
      width: resource.width,
      height: resource.height,
      stride: resource.stride,
      offset: 0,
      rect: { x: 0, y: 0, width: resource.width, height: resource.height },
    };
  }

  /** No copy fallback: these sources are shown by reference only. */
  readPixels(): boolean {
    return false;
  }

  stats() {
    return {};
  }

  close(): void {
    for (const guest of this.guests.values()) guest.close();
    this.guests.clear();
  }
}
