/**
 * Frame pacing for one surface: a flush commits at once when no frame callback is pending;
 * flushes that arrive while one is pending merge their damage and commit together when the
 * callback fires. Nothing here talks Wayland: the surface side is a `CommitTarget`, so the
 * policy is unit-testable. Per flush nothing is allocated.
 *
 * A commit asks for a frame callback only when pacing is needed: a guest slower than the display
 * (a commit at least `unpacedIntervalMs` after the previous one) commits without one, so the
 * compositor's `done` does not wake guestfb a second time per guest frame (on a loaded machine
 * each wake-up costs more CPU than the frame's requests). A commit that follows the previous one
 * sooner, the first commit of a new buffer or of a newly ready surface, and every commit of a
 * buffer that copies (a hidden window must not make the copy run for nothing) ask for one.
 */
import { DamageAccumulator } from './damage.js';
import { LatencyRing, type PluginStats } from '../stats.js';

export interface CommitTarget {
  /**
   * Sends damage_buffer for each rect of `damage`, requests a frame callback when
   * `frameCallback` is true, and commits. Returns the number of pixel bytes copied to make the
   * frame (0 on the zero-copy paths).
   */
  commit(damage: DamageAccumulator, frameCallback: boolean): number;
}

export interface PacerOptions {
  /**
   * A commit this long (ms) or longer after the previous one needs no frame callback (default
   * 20: a guest under 50 frames a second is slower than a 60 Hz display). Infinity: every
   * commit asks for one.
   */
  unpacedIntervalMs?: number;
  /** The clock (ms), for tests. */
  now?: () => number;
}

/** Default of PacerOptions.unpacedIntervalMs. */
export const UNPACED_INTERVAL_MS = 20;

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
  /** Time of the last commit (-Infinity before the first). */
  private lastCommit = -Infinity;
  /** The next commit asks for a frame callback whatever the interval (new buffer, newly ready). */
  private pacedNext = true;
  /** Whether commits may go without a frame callback (false for buffers that copy). */
  private unpacedAllowed = true;
  /** Commits made without a frame callback (statistics and tests). */
  unpacedCommits = 0;
  private readonly unpacedIntervalMs: number;
  private readonly now: () => number;

  constructor(
    private readonly stats: PluginStats,
    private readonly target: CommitTarget,
    width: number,
    height: number,
    options: PacerOptions = {},
  ) {
    this.damage = new DamageAccumulator(width, height);
    this.unpacedIntervalMs = options.unpacedIntervalMs ?? UNPACED_INTERVAL_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * A new buffer (or size): everything is damaged; a pending frame callback stays pending. Its
   * first commit asks for a frame callback. `unpaced`: whether this buffer's commits may go
   * without one (zero-copy buffers; a copy would run for every commit of a hidden window).
   */
  reset(width: number, height: number, unpaced = true): void {
    this.damage.resize(width, height);
    this.damage.addFull();
    this.pacedNext = true;
    this.unpacedAllowed = unpaced;
  }

  /** Whether commits may happen (the surface is configured and has a buffer). */
  setReady(ready: boolean): void {
    if (ready && !this.ready) this.pacedNext = true;
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
    this.pacedNext = true;
    this.damage.clear();
    this.oldestFlush = -1;
  }

  private maybeCommit(): void {
    if (!this.ready || this.framePending || this.damage.empty) return;
    const now = this.now();
    const paced =
      this.pacedNext || !this.unpacedAllowed || now - this.lastCommit < this.unpacedIntervalMs;
    this.lastCommit = now;
    this.pacedNext = false;
    this.framePending = paced;
    if (!paced) this.unpacedCommits++;
    const copied = this.target.commit(this.damage, paced);
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
