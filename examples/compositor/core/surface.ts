/**
 * The wl_surface state machine without the wire: pending and current state, attach/commit,
 * damage and damage_buffer, buffer scale and transform, viewport, frame callbacks, presentation
 * feedback, synchronized subsurface caching, and buffer release.
 *
 * Buffer release: a wl_shm buffer is copied into a snapshot at commit and released at once; any
 * other buffer (dma-buf) is read in place and released after the commit that replaced it was
 * rendered (Scene calls releaseReplaced() after each render tick).
 */
import type { RenderBuffer } from '../render/compose.js';
import { Region, rect, type Rect } from '../render/region.js';
import {
  surfaceSize,
  surfaceToBufferMatrix,
  transformRectBounds,
  bufferRectToSurface,
  viewportSourceFits,
  type BufferGeometry,
  type ViewportState,
} from '../render/transform.js';
import { SnapshotBuffer } from './snapshot.js';

/** A client buffer (one per wl_buffer) as surfaces hold it. */
export interface ClientBuffer {
  readonly render: RenderBuffer;
  /** True for wl_shm: copied at commit, released immediately. */
  readonly copyOnCommit: boolean;
  /** False after the wl_buffer was destroyed. */
  readonly alive: boolean;
  /** wl_buffer.release (no-op when not alive). */
  release(): void;
  /** The client made the buffer unreadable (truncated its memory): report it (protocol error). */
  unreadable(message: string): void;
}

/** A wl_callback from wl_surface.frame. */
export interface FrameCallbackSink {
  done(timeMs: number): void;
}

export interface PresentedInfo {
  /** CLOCK_MONOTONIC nanoseconds of the render tick. */
  timeNs: bigint;
  refreshNs: number;
  sequence: bigint;
  /** wp_presentation_feedback.kind bits. */
  flags: number;
  /** The output's name, to find the wl_output resources for sync_output. */
  outputName: string;
}

/** A wp_presentation_feedback. */
export interface PresentationSink {
  presented(info: PresentedInfo): void;
  discarded(): void;
}

/** Errors a commit can raise; the protocol layer maps them to protocol errors. */
export class SurfaceCommitError extends Error {
  constructor(
    readonly kind: 'invalid-size' | 'viewport-out-of-buffer' | 'viewport-bad-size',
    message: string,
  ) {
    super(message);
  }
}

/** Thrown by a role's commit check after it posted its protocol error: the commit is dropped. */
export class CommitRejected extends Error {
  constructor() {
    super('commit rejected by the surface role');
  }
}

class PendingState {
  bufferChanged = false;
  buffer: ClientBuffer | null = null;
  dx = 0;
  dy = 0;
  readonly surfaceDamage = new Region();
  readonly bufferDamage = new Region();
  scale: number | undefined;
  transform: number | undefined;
  viewport: Partial<ViewportState> = {};
  frameCallbacks: FrameCallbackSink[] = [];
  feedbacks: PresentationSink[] = [];

  /** Moves everything from `newer` into this state (for synchronized subsurfaces). */
  mergeFrom(newer: PendingState): void {
    if (newer.bufferChanged) {
      this.bufferChanged = true;
      this.buffer = newer.buffer;
    }
    this.dx += newer.dx;
    this.dy += newer.dy;
    this.surfaceDamage.union(newer.surfaceDamage).simplify();
    this.bufferDamage.union(newer.bufferDamage).simplify();
    this.scale = newer.scale ?? this.scale;
    this.transform = newer.transform ?? this.transform;
    this.viewport = { ...this.viewport, ...newer.viewport };
    this.frameCallbacks.push(...newer.frameCallbacks);
    this.feedbacks.push(...newer.feedbacks);
    newer.reset();
  }

  reset(): void {
    this.bufferChanged = false;
    this.buffer = null;
    this.dx = 0;
    this.dy = 0;
    this.surfaceDamage.clear();
    this.bufferDamage.clear();
    this.scale = undefined;
    this.transform = undefined;
    this.viewport = {};
    this.frameCallbacks = [];
    this.feedbacks = [];
  }
}

/** What a commit changed, for the scene's damage tracking. */
export interface CommitResult {
  /** Damage in surface-local coordinates. */
  damage: Region;
  /** Whether the surface's size or mapped-ness changed (damage old and new bounds). */
  geometryChanged: boolean;
  dx: number;
  dy: number;
}

export interface SubsurfaceLink {
  surface: Surface;
  /** Position relative to the parent (current). */
  x: number;
  y: number;
  /** Position applied at the parent's next commit. */
  pendingX: number;
  pendingY: number;
  synchronized: boolean;
}

let nextSurfaceId = 1;

export class Surface {
  readonly id = nextSurfaceId++;
  private pending = new PendingState();
  private cached: PendingState | null = null;

  /** Current state. */
  scale = 1;
  transform = 0;
  viewport: ViewportState = { source: null, destination: null };
  /** What the renderer draws (snapshot or live buffer); null when no buffer is attached. */
  content: RenderBuffer | null = null;
  /** The live buffer being displayed (not for copied shm buffers). */
  private displayed: ClientBuffer | null = null;
  /** Buffers replaced by a commit, released after the next render. */
  private replaced: ClientBuffer[] = [];
  private snapshot: SnapshotBuffer | null = null;
  frameCallbacks: FrameCallbackSink[] = [];
  feedbacks: PresentationSink[] = [];

  role: string | null = null;
  /** Role object (xdg_surface, subsurface, ...) for the protocol layer. */
  roleData: unknown = null;
  /** Stacking of this surface and its subsurfaces, bottom to top (contains `self`). */
  readonly stack: (SubsurfaceLink | 'self')[] = ['self'];
  /** The stacking order requested by place_above/place_below, applied at this surface's commit. */
  private pendingStack: (SubsurfaceLink | 'self')[] | null = null;
  parent: Surface | null = null;
  /**
   * Listeners run after each applied commit, in the order they were added (the scene's first,
   * then the role's). A list, like wlroots' wl_signal: each listener removes only itself, so
   * roles can be torn down in any order.
   */
  private readonly appliedListeners: ((surface: Surface, result: CommitResult) => void)[] = [];
  /** Runs before the pending state is applied; throw to reject the commit. */
  readonly commitChecks: ((
    surface: Surface,
    bufferChanged: boolean,
    hasBuffer: boolean,
  ) => void)[] = [];
  /** Logs copy failures and similar non-fatal problems. */
  log: (message: string) => void = () => {};
  destroyed = false;

  // --- requests -------------------------------------------------------------------------------

  /** wl_surface.attach; the offset only before version 5 (later, wl_surface.offset sets it and
   * attach must not undo that). */
  attach(buffer: ClientBuffer | null, dx?: number, dy?: number): void {
    this.pending.bufferChanged = true;
    this.pending.buffer = buffer;
    if (dx !== undefined && dy !== undefined) {
      this.pending.dx = dx;
      this.pending.dy = dy;
    }
  }

  offset(dx: number, dy: number): void {
    this.pending.dx = dx;
    this.pending.dy = dy;
  }

  damage(x: number, y: number, width: number, height: number): void {
    this.pending.surfaceDamage.add(rect(x, y, width, height)).simplify();
  }

  damageBuffer(x: number, y: number, width: number, height: number): void {
    this.pending.bufferDamage.add(rect(x, y, width, height)).simplify();
  }

  frame(callback: FrameCallbackSink): void {
    this.pending.frameCallbacks.push(callback);
  }

  presentationFeedback(feedback: PresentationSink): void {
    this.pending.feedbacks.push(feedback);
  }

  setBufferScale(scale: number): void {
    this.pending.scale = scale;
  }

  setBufferTransform(transform: number): void {
    this.pending.transform = transform;
  }

  setViewportSource(source: ViewportState['source']): void {
    this.pending.viewport.source = source;
  }

  setViewportDestination(destination: ViewportState['destination']): void {
    this.pending.viewport.destination = destination;
  }

  /** True when this surface is a synchronized subsurface (or inside one). */
  isEffectivelySynchronized(): boolean {
    if (!this.parent) return false;
    if (this.parent.linkOf(this)?.synchronized) return true;
    return this.parent.isEffectivelySynchronized();
  }

  /** wl_surface.commit. Throws SurfaceCommitError (or a role's error) on a bad state. */
  commit(): void {
    if (this.isEffectivelySynchronized()) {
      this.cached ??= new PendingState();
      this.cached.mergeFrom(this.pending);
      return;
    }
    if (this.cached) {
      this.cached.mergeFrom(this.pending);
      const state = this.cached;
      this.cached = null;
      this.apply(state);
    } else {
      this.apply(this.pending);
    }
  }

  /** Applies cached state of synchronized children when their parent commits. */
  private applyChildren(): void {
    for (const entry of this.stack) {
      if (entry === 'self') continue;
      entry.x = entry.pendingX;
      entry.y = entry.pendingY;
      const child = entry.surface;
      if (child.cached && child.isEffectivelySynchronized()) {
        const state = child.cached;
        child.cached = null;
        child.apply(state);
      } else {
        child.applyChildren();
      }
    }
  }

  geometry(): BufferGeometry | null {
    if (!this.content) return null;
    return {
      bufferWidth: this.content.width,
      bufferHeight: this.content.height,
      scale: this.scale,
      transform: this.transform,
      viewport: this.viewport,
    };
  }

  /** Surface size; 0x0 when unmapped. */
  size(): { width: number; height: number } {
    const geometry = this.geometry();
    return geometry ? surfaceSize(geometry) : { width: 0, height: 0 };
  }

  private apply(state: PendingState): void {
    const newBuffer = state.bufferChanged ? state.buffer : undefined;
    const liveNew = newBuffer && newBuffer.alive ? newBuffer : null;
    for (const check of this.commitChecks) {
      check(
        this,
        state.bufferChanged,
        state.bufferChanged ? liveNew !== null : this.content !== null,
      );
    }
    const scale = state.scale ?? this.scale;
    const transform = state.transform ?? this.transform;
    const viewport: ViewportState = { ...this.viewport, ...state.viewport };
    const candidate = state.bufferChanged ? (liveNew?.render ?? null) : this.content;
    if (candidate) {
      const g: BufferGeometry = {
        bufferWidth: candidate.width,
        bufferHeight: candidate.height,
        scale,
        transform,
        viewport,
      };
      if (!viewport.destination && !viewport.source) {
        const [w, h] =
          (transform & 1) === 1 ? [g.bufferHeight, g.bufferWidth] : [g.bufferWidth, g.bufferHeight];
        if (w % scale !== 0 || h % scale !== 0) {
          throw new SurfaceCommitError(
            'invalid-size',
            `buffer ${candidate.width}x${candidate.height} is not a multiple of scale ${scale}`,
          );
        }
      }
      if (!viewportSourceFits(g)) {
        throw new SurfaceCommitError(
          'viewport-out-of-buffer',
          'viewport source is outside the buffer',
        );
      }
      const source = viewport.source;
      if (
        !viewport.destination &&
        source &&
        (!Number.isInteger(source.width) || !Number.isInteger(source.height))
      ) {
        throw new SurfaceCommitError(
          'viewport-bad-size',
          'viewport source size is not integral and no destination is set',
        );
      }
    }

    const before = this.size();
    const wasMapped = this.content !== null;
    this.scale = scale;
    this.transform = transform;
    this.viewport = viewport;

    const damage = new Region();
    if (state.bufferChanged) this.takeBuffer(liveNew, state);
    const geometry = this.geometry();
    if (geometry) {
      damage.union(state.surfaceDamage);
      for (const r of state.bufferDamage.rectangles) damage.add(bufferRectToSurface(geometry, r));
    }
    const after = this.size();
    const geometryChanged =
      wasMapped !== (this.content !== null) ||
      before.width !== after.width ||
      before.height !== after.height;
    if (geometryChanged || state.scale !== undefined || state.transform !== undefined) {
      damage.add({ x: 0, y: 0, ...after });
    }

    this.frameCallbacks.push(...state.frameCallbacks);
    for (const feedback of this.feedbacks) feedback.discarded(); // superseded, never presented
    this.feedbacks = state.feedbacks;
    const result: CommitResult = { damage, geometryChanged, dx: state.dx, dy: state.dy };
    state.reset();
    if (this.pendingStack) {
      this.stack.splice(0, this.stack.length, ...this.pendingStack);
      this.pendingStack = null;
    }
    this.applyChildren();
    for (const listener of [...this.appliedListeners]) listener(this, result);
  }

  /** Adds a listener for applied commits; returns the function that removes it. */
  onApplied(listener: (surface: Surface, result: CommitResult) => void): () => void {
    this.appliedListeners.push(listener);
    return () => {
      const index = this.appliedListeners.indexOf(listener);
      if (index >= 0) this.appliedListeners.splice(index, 1);
    };
  }

  private takeBuffer(buffer: ClientBuffer | null, state: PendingState): void {
    if (this.displayed && this.displayed !== buffer) this.replaced.push(this.displayed);
    if (this.displayed !== buffer) this.displayed = null;
    if (!buffer) {
      this.content = null;
      this.snapshot = null;
      return;
    }
    if (!buffer.copyOnCommit) {
      this.displayed = buffer;
      this.content = buffer.render;
      this.snapshot = null;
      return;
    }
    const source = buffer.render;
    let area: Rect = { x: 0, y: 0, width: source.width, height: source.height };
    if (!this.snapshot || !this.snapshot.matches(source) || this.content !== this.snapshot) {
      this.snapshot = new SnapshotBuffer(source.width, source.height, source.format);
    } else {
      area = this.damagedBufferArea(source, state);
    }
    if (!this.snapshot.copyFrom(source, area)) {
      this.log('shm buffer unreadable (the client truncated its pool); kept old pixels');
      buffer.unreadable('the pool is shorter than the buffer');
    }
    this.content = this.snapshot;
    buffer.release();
  }

  /** Bounding box, in buffer pixels, of everything the pending state damages. */
  private damagedBufferArea(source: RenderBuffer, state: PendingState): Rect {
    const g: BufferGeometry = {
      bufferWidth: source.width,
      bufferHeight: source.height,
      scale: this.scale,
      transform: this.transform,
      viewport: this.viewport,
    };
    const region = state.bufferDamage.clone();
    const toBuffer = surfaceToBufferMatrix(g);
    for (const r of state.surfaceDamage.rectangles) region.add(transformRectBounds(toBuffer, r));
    return region.extents();
  }

  /** Called by the scene after a render: releases buffers replaced before that render. */
  releaseReplaced(): void {
    for (const buffer of this.replaced.splice(0)) buffer.release();
  }

  /** Sends `done` to every committed frame callback. */
  sendFrameDone(timeMs: number): void {
    for (const callback of this.frameCallbacks.splice(0)) callback.done(timeMs);
  }

  takeFeedbacks(): PresentationSink[] {
    return this.feedbacks.splice(0);
  }

  // --- subsurfaces -------------------------------------------------------------------------------

  linkOf(child: Surface): SubsurfaceLink | null {
    for (const entry of this.stack) if (entry !== 'self' && entry.surface === child) return entry;
    return null;
  }

  addChild(child: Surface): SubsurfaceLink {
    const link: SubsurfaceLink = {
      surface: child,
      x: 0,
      y: 0,
      pendingX: 0,
      pendingY: 0,
      synchronized: true,
    };
    // New subsurfaces go on top, at once; later restacking waits for the parent's commit.
    this.stack.push(link);
    this.pendingStack?.push(link);
    child.parent = this;
    return link;
  }

  removeChild(child: Surface): void {
    for (const stack of [this.stack, this.pendingStack]) {
      const index = stack?.findIndex((entry) => entry !== 'self' && entry.surface === child) ?? -1;
      if (index >= 0) stack?.splice(index, 1);
    }
    child.parent = null;
  }

  /**
   * place_above / place_below: `sibling` is the parent itself or another child. The new order
   * is pending until this (parent) surface commits. False when `sibling` is neither.
   */
  restack(child: Surface, sibling: Surface, above: boolean): boolean {
    const stack = (this.pendingStack ??= [...this.stack]);
    const index = stack.findIndex((entry) => entry !== 'self' && entry.surface === child);
    if (index < 0) return false;
    const [link] = stack.splice(index, 1);
    const target = stack.findIndex((entry) =>
      sibling === this ? entry === 'self' : entry !== 'self' && entry.surface === sibling,
    );
    if (target < 0) {
      stack.splice(index, 0, link);
      return false;
    }
    stack.splice(above ? target + 1 : target, 0, link);
    return true;
  }

  /** True if `other` is this surface or one of its ancestors (a subsurface cycle). */
  isSelfOrAncestor(other: Surface): boolean {
    if (other === this) return true;
    for (let surface = this.parent; surface; surface = surface.parent) {
      if (surface === other) return true;
    }
    return false;
  }

  /** Leaves everything: frame callbacks and feedbacks are dropped, buffers released. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const feedback of [...this.feedbacks, ...this.pending.feedbacks]) feedback.discarded();
    this.feedbacks = [];
    this.frameCallbacks = [];
    this.pending.reset();
    this.cached = null;
    this.releaseReplaced();
    this.displayed?.release();
    this.displayed = null;
    this.content = null;
    this.snapshot = null;
    this.parent?.removeChild(this);
    for (const entry of this.stack) if (entry !== 'self') entry.surface.parent = null;
  }
}
