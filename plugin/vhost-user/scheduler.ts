/**
 * Fair queue scheduling across every vhost-user device of the process. A guest controls how much
 * work its rings hold: it can refill the available ring as fast as guestfb empties it (one kick
 * once ran 1,000,000 commands in 2.8 s without yielding, and every other guest, the Wayland
 * connection and an in-process compositor stood still). So a queue runs in slices: at most
 * `chainsPerSlice` chains and about `sliceMs` of work, then it yields. A queue with work left
 * joins a round-robin run list that one `setImmediate` per round serves, one slice per queue, so
 * each guest and each queue gets the same share, and the event loop (kicks of other guests,
 * Wayland, the compositor) runs between rounds.
 *
 * A kick of a queue that is not waiting in the list runs its first slice at once (most kicks
 * bring a few commands and finish there); a kick of a queue already in the list only notes it.
 */

export interface QueueBudget {
  /** Most chains one queue runs before it yields (default 256). */
  chainsPerSlice: number;
  /** Time after which a queue yields, in ms (default 2; checked after each chain). */
  sliceMs: number;
}

export const DEFAULT_QUEUE_BUDGET: QueueBudget = { chainsPerSlice: 256, sliceMs: 2 };

export function resolveQueueBudget(budget: Partial<QueueBudget> = {}): QueueBudget {
  const resolved = { ...DEFAULT_QUEUE_BUDGET, ...budget };
  if (!Number.isSafeInteger(resolved.chainsPerSlice) || resolved.chainsPerSlice < 1) {
    throw new RangeError(
      `chainsPerSlice must be a positive integer (got ${resolved.chainsPerSlice})`,
    );
  }
  if (!(resolved.sliceMs > 0 && resolved.sliceMs <= 1000)) {
    throw new RangeError(`sliceMs must be in (0, 1000] (got ${resolved.sliceMs})`);
  }
  return resolved;
}

/** One runnable queue: runs a slice and says whether work is left. */
export interface ScheduledQueue {
  /** Runs one slice; returns true when the queue still has work (it is scheduled again). */
  runSlice(): boolean;
}

export class QueueScheduler {
  private readonly waiting: ScheduledQueue[] = [];
  private readonly queued = new Set<ScheduledQueue>();
  private round: NodeJS.Immediate | null = null;
  readonly counters = { rounds: 0, slices: 0, deferred: 0 };

  constructor(private readonly defer: (run: () => void) => NodeJS.Immediate = setImmediate) {}

  /** True while `queue` waits for a round (its kicks need not run it). */
  isWaiting(queue: ScheduledQueue): boolean {
    return this.queued.has(queue);
  }

  /** A queue was kicked: runs its first slice now unless it waits for a round already. */
  kick(queue: ScheduledQueue): void {
    if (this.queued.has(queue)) return;
    this.counters.slices++;
    if (queue.runSlice()) this.enqueue(queue);
  }

  /** Forgets a queue (its device went away). */
  remove(queue: ScheduledQueue): void {
    if (!this.queued.delete(queue)) return;
    const at = this.waiting.indexOf(queue);
    if (at >= 0) this.waiting.splice(at, 1);
  }

  private enqueue(queue: ScheduledQueue): void {
    this.counters.deferred++;
    this.queued.add(queue);
    this.waiting.push(queue);
    this.round ??= this.defer(() => this.runRound());
  }

  /** One slice for each queue waiting at the start of the round, in order. */
  private runRound(): void {
    this.round = null;
    this.counters.rounds++;
    const batch = this.waiting.splice(0);
    for (const queue of batch) {
      if (!this.queued.has(queue)) continue; // removed meanwhile
      this.counters.slices++;
      let more = false;
      try {
        more = queue.runSlice();
      } finally {
        if (more) this.waiting.push(queue);
        else this.queued.delete(queue);
      }
    }
    if (this.waiting.length > 0) this.round = this.defer(() => this.runRound());
  }
}

/** The scheduler every device of this process shares unless given another. */
export const processScheduler = new QueueScheduler();
