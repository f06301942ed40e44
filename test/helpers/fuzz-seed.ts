// The fuzz runs inside `npm test`: one fixed seed so CI is reproducible (`npm run fuzz` draws
// random seeds); GUESTFB_FUZZ_SEED runs another one here, e.g. a seed a fuzz run reported.
import type { TestContext } from 'node:test';

const FIXED_SEED = 20261204;

export function fuzzSeed(): number {
  const seed = process.env.GUESTFB_FUZZ_SEED ? Number(process.env.GUESTFB_FUZZ_SEED) : FIXED_SEED;
  if (!Number.isSafeInteger(seed)) throw new Error(`GUESTFB_FUZZ_SEED must be an integer`);
  return seed;
}

/** Runs `fuzz`, printing the seed and what it found; a failure always names the seed. */
export function runSeeded<T>(t: TestContext, seed: number, fuzz: () => T): T {
  t.diagnostic(`seed ${seed} (rerun with GUESTFB_FUZZ_SEED=${seed})`);
  const started = process.hrtime.bigint();
  let result: T;
  try {
    result = fuzz();
  } catch (error) {
    // The fuzzers name seed and case in their own failures; anything else still gets the seed.
    const message = (error as Error).message;
    throw new Error(message.includes(`seed ${seed}`) ? message : `seed ${seed}: ${message}`, {
      cause: error,
    });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.diagnostic(`${JSON.stringify(result)} in ${seconds.toFixed(1)} s`);
  return result;
}
