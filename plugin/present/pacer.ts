/**
 * Frame pacing for one surface: a flush commits at once when no frame callback is pending;
 * flushes that arrive while one is pending merge their damage and commit together when the
 * callback fires. Nothing here talks Wayland: the surface side is a `CommitTarget`, so the
 * policy is unit-testable. Per flush nothing is allocated.
 */
import { DamageAccumulator } from './damage.js';
import { LatencyRing, type PluginStats } from '../stats.js';

export interface CommitTarget {
  /**
   * Sends damage_buffer for each rect of `damage`, requests a frame callback and commits.
   * Returns the number of pixel bytes copied to make the frame (0 on the zero-copy paths).
   */
  commit(damage: DamageAccumulator): number;
}

export interface RectLike {
  x: number;
  y: number;
  width: number;
  height: number;
}

export class FramePacer {
  readonly damage: DamageAccumulator;
  /** This surface's flush → commit latency (the plugin-wide ring mixes every surface). */
  readonly handoff = new LatencyRing(256);
  private framePending = false;
  private ready = false;
  /** performance.now() of the oldest flush not yet committed, -1 when none. */
  private oldestFlush = -1;

  constructor(
    private readonly stats: PluginStats,
    private readonly target: CommitTarget,
    width: number,
    height: number,
  ) {
    this.damage = new DamageAccumulator(width, height);
  }

  /** A new buffer (or size): everything is damaged; a pending frame callback stays pending. */
  reset(width: number, height: number): void {
    this.damage.resize(width, height);
    this.damage.addFull();
  }

  /** Whether commits may happen (the surface is configured and has a buffer). */
  setReady(ready: boolean): void {
    this.ready = ready;
    if (ready) this.maybeCommit();
  }

  get waitingForFrame(): boolean {
    return this.framePending;
  }

  /** A guest flush: merge its damage and commit now if the surface may take a frame. */
  flush(rects: readonly RectLike[]): void {
    let added = false;
    for (let i = 0; i < rects.length; i++) {
      const r = rects[i];
      if (this.damage.add(r.x, r.y, r.width, r.height)) added = true;
    }
    if (!added) return;
    if (this.oldestFlush < 0) this.oldestFlush = performance.now();
    this.maybeCommit();
  }

  /** Damage everything and commit when possible (new buffer attached, resize). */
  flushFull(): void {
    this.damage.addFull();
    if (this.oldestFlush < 0) this.oldestFlush = performance.now();
    this.maybeCommit();
  }

  /** The frame callback fired: the compositor wants the next frame. */
  frameDone(): void {
    this.framePending = false;
    this.maybeCommit();
  }

  /** The surface went away: drop pending damage and state. */
  stop(): void {
    this.ready = false;
    this.framePending = false;
    this.damage.clear();
    this.oldestFlush = -1;
  }

  private maybeCommit(): void {
    if (!this.ready || this.framePending || this.damage.empty) return;
    this.framePending = true;
    const copied = this.target.commit(this.damage);
    this.stats.bytesCopied += copied;
    this.stats.framesPresented++;
    if (this.oldestFlush >= 0) {
      const waited = this.stats.handoff.recordSince(this.oldestFlush);
      this.handoff.record(waited);
      this.oldestFlush = -1;
    }
    this.damage.clear();
  }
}
