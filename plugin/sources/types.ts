/**
 * The interface between a framebuffer source (virtio-gpu over vhost-user, shared BAR) and the
 * plugin core. A source reports heads (guest displays), resources (guest buffers and where their
 * pages live) and what each head shows; the core turns that into dma-bufs and Wayland buffers.
 *
 * Fd ownership: every fd in a `BackingRange` is BORROWED from the source (for virtio-gpu: from the
 * guest memory table). It stays valid until the source emits `backingChanged` or
 * `resourceDestroyed` for that resource, or `disconnected`; a consumer that needs it longer must
 * dup it. Consumers must never close these fds.
 */
import type { BackingRange } from '../common/backing.js';

/** A rectangle in pixels. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One guest display (a virtio-gpu scanout). */
export interface HeadInfo {
  /** Scanout index, 0-based. */
  id: number;
  /** Preferred mode the guest is offered. */
  width: number;
  height: number;
  /** Position in the guest's virtual desktop (display info rect). */
  x: number;
  y: number;
  enabled: boolean;
  /** Monitor name as given in the EDID. */
  name: string;
}

/** A span of a memory fd (memfd) holding part of a buffer, in buffer order; fds borrowed as above. */
export type { BackingRange } from '../common/backing.js';

/** A guest buffer and its memory. Layout fields describe a linear (modifier 0) image. */
export interface SourceResource {
  id: number;
  /** '2d': RESOURCE_CREATE_2D (layout known at creation); 'blob': RESOURCE_CREATE_BLOB (layout
   * comes with SET_SCANOUT_BLOB, so fourcc/width/height/stride are 0 until then). */
  kind: '2d' | 'blob';
  /** DRM fourcc (e.g. XRGB8888), 0 when not known yet. */
  fourcc: number;
  /** DRM format modifier: always LINEAR (0). */
  modifier: bigint;
  width: number;
  height: number;
  /** Bytes per row. */
  stride: number;
  /** Byte offset of the first pixel within the backing. */
  offset: number;
  /** Total bytes of backing (sum of range lengths). */
  size: number;
  /** Where the bytes live, in order; empty when the guest has not attached backing. */
  backing: readonly BackingRange[];
  /**
   * True when the backing fds hold nothing but display memory the guest shares on purpose (a
   * shared BAR); absent for guest RAM. Decides whether a zero-copy wl_shm pool, which shows the
   * compositor its fd from byte 0, may be used without the caller's opt-in.
   */
  displayMemoryOnly?: boolean;
}

/** What a head shows: a resource (with its layout for this scanout) and the part of it. */
export interface ScanoutInfo {
  headId: number;
  resourceId: number;
  fourcc: number;
  modifier: bigint;
  /** Size of the whole buffer. */
  width: number;
  height: number;
  stride: number;
  offset: number;
  /** The part of the buffer the head shows, in buffer pixels. */
  rect: Rect;
}

/** A cursor change on a head. */
export interface CursorUpdate {
  headId: number;
  /** Position of the hotspot on the head, in head pixels. */
  x: number;
  y: number;
  /** undefined: only the position moved. null: the cursor is hidden. */
  image?: CursorImage | null;
}

export interface CursorImage {
  resourceId: number;
  hotX: number;
  hotY: number;
  width: number;
  height: number;
  /** DRM fourcc of `pixels` (ARGB8888 for virtio-gpu cursors). */
  fourcc: number;
  /** width * height * 4 bytes, tightly packed (a copy: cursors are small). */
  pixels: Uint8Array;
}

/** Events a source emits. Listener arguments are tuples. */
export interface SourceEvents {
  /** The set of heads or a head's preferred mode changed. */
  headsChanged: [heads: readonly HeadInfo[]];
  resourceCreated: [resource: SourceResource];
  /** Backing was attached or detached (or layout became known for a blob). */
  backingChanged: [resource: SourceResource];
  resourceDestroyed: [resourceId: number];
  /** A head started showing a resource, or (null) was disabled. */
  scanoutSet: [headId: number, scanout: ScanoutInfo | null];
  /** The guest finished drawing into the resource a head shows; damage in buffer pixels. */
  flush: [headId: number, damage: readonly Rect[]];
  cursor: [update: CursorUpdate];
  /** The peer (QEMU) went away; every resource and borrowed fd is gone. */
  disconnected: [reason: string];
}

export type SourceEventName = keyof SourceEvents;
export type SourceListener<K extends SourceEventName> = (...args: SourceEvents[K]) => void;

/** Counters a source keeps (zero-copy path: `bytesCopied` stays 0). */
export interface SourceStats {
  [counter: string]: number;
}

/** What the plugin core consumes. */
export interface FramebufferSource {
  on<K extends SourceEventName>(event: K, listener: SourceListener<K>): this;
  off<K extends SourceEventName>(event: K, listener: SourceListener<K>): this;
  heads(): readonly HeadInfo[];
  resource(id: number): SourceResource | undefined;
  /** Current scanout of a head, or null. */
  scanout(headId: number): ScanoutInfo | null;
  /**
   * The explicit copy fallback (for sinks that cannot import the backing): copies `rect` of a
   * resource out of guest memory into `target` (tightly packed rows of rect.width * 4 bytes).
   * Returns false when the resource, its layout or its backing does not cover the rect.
   * Counted in stats.bytesCopied.
   */
  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean;
  /**
   * The display asks for a head size (its window was resized by the compositor). A source that
   * can offers it to the guest as the head's preferred mode; the guest decides whether to take
   * it. Returns false when the source cannot pass it on (or the size is out of range).
   */
  requestHeadSize?(headId: number, width: number, height: number): boolean;
  stats(): SourceStats;
  close(): void;
}
