import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../fuzz/virtio-gpu-fuzzer.js';

// npm test runs one fixed seed so CI is reproducible; `npm run fuzz` draws random seeds.
// GUESTFB_FUZZ_SEED runs another seed here (e.g. one a fuzz run reported).
const fixedSeed = 20261204;
const seed = process.env.GUESTFB_FUZZ_SEED ? Number(process.env.GUESTFB_FUZZ_SEED) : fixedSeed;
if (!Number.isSafeInteger(seed)) throw new Error(`GUESTFB_FUZZ_SEED must be an integer`);
const cases = 100_000;

test(`fuzz: ${cases} random and mutated chains and commands (seed ${seed})`, (t) => {
  t.diagnostic(`seed ${seed} (rerun with GUESTFB_FUZZ_SEED=${seed})`);
  const started = process.hrtime.bigint();
  let result: ReturnType<typeof runFuzz>;
  try {
    result = runFuzz({ seed, cases });
  } catch (error) {
    // runFuzz names seed and case in its own failures; anything else still gets the seed.
    const message = (error as Error).message;
    throw new Error(message.includes(`seed ${seed}`) ? message : `seed ${seed}: ${message}`, {
      cause: error,
    });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.diagnostic(`${JSON.stringify(result)} in ${seconds.toFixed(1)} s`);
  const bySeed = (what: string): string => `${what} (seed ${seed})`;
  assert.equal(result.cases, cases, bySeed('cases run'));
  // The generator must reach both outcomes and a spread of responses, or it tests nothing.
  assert.ok(result.drops > 100, bySeed(`${result.drops} drops`));
  assert.ok((result.byResponse.OK_NODATA ?? 0) > 1000, bySeed('successful commands'));
  for (const error of [
    'ERR_UNSPEC',
    'ERR_INVALID_RESOURCE_ID',
    'ERR_INVALID_PARAMETER',
    'ERR_INVALID_SCANOUT_ID',
  ]) {
    assert.ok(
      (result.byResponse[error] ?? 0) > 100,
      bySeed(`${error}: ${result.byResponse[error]}`),
    );
  }
  assert.ok(
    result.ringCorruptions > 50 && result.cursorCases > 1000,
    bySeed(`${result.ringCorruptions} ring corruptions, ${result.cursorCases} cursor cases`),
  );
});
