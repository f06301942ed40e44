// The one poll-until helper of the test tiers: every wait on "something happened" goes through
// here, so a wait that gives up always says what it waited for.

export interface PollOptions {
  /** Pause between checks. */
  intervalMs?: number;
  /** Give up after this long (default: never; the test's own timeout ends it). */
  limitMs?: number;
  /** A process whose early exit ends the wait with an error (a client that died cannot answer). */
  child?: { exitCode: number | null };
  /** Work to do before each check, e.g. a Wayland roundtrip that lets the other side answer. */
  step?: () => unknown;
}

/** Checks `done` until it holds (true) or `limitMs` passes (false). */
export async function poll(
  done: () => boolean | Promise<boolean>,
  { intervalMs = 10, limitMs = Infinity, child, step }: PollOptions = {},
): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (step) await step();
    if (await done()) return true;
    if (child && child.exitCode !== null) throw new Error(`process exited (${child.exitCode})`);
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Like `poll`, but gives up (after a minute unless `limitMs` says otherwise) with an error naming `what`. */
export async function until(
  done: () => boolean | Promise<boolean>,
  what: string,
  options: PollOptions = {},
): Promise<void> {
  let ok: boolean;
  try {
    ok = await poll(done, { limitMs: 60_000, ...options });
  } catch (error) {
    throw new Error(`${(error as Error).message} before: ${what}`);
  }
  if (!ok) throw new Error(`gave up waiting for ${what}`);
}

/** Waits for `done` while letting a plugin roundtrip with its compositor between checks. */
export function settleUntil(
  plugin: { settle(): Promise<unknown> },
  done: () => boolean,
  what: string,
  options: Omit<PollOptions, 'step'> = {},
): Promise<void> {
  return until(done, what, {
    limitMs: 60_000,
    intervalMs: 5,
    ...options,
    step: () => plugin.settle(),
  });
}
