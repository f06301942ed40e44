import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runHostileFuzz } from '../fuzz/hostile-fuzzer.js';

// npm test runs one fixed seed so CI is reproducible; `npm run fuzz` draws random seeds.
// GUESTFB_FUZZ_SEED runs another seed here (e.g. one a fuzz run reported).
const fixedSeed = 20261204;
const seed = process.env.GUESTFB_FUZZ_SEED ? Number(process.env.GUESTFB_FUZZ_SEED) : fixedSeed;
if (!Number.isSafeInteger(seed)) throw new Error(`GUESTFB_FUZZ_SEED must be an integer`);
const cases = 20_000;

test(`hostile fuzz: ${cases} framing, message, backing and BAR cases (seed ${seed})`, (t) => {
  t.diagnostic(`seed ${seed} (rerun with GUESTFB_FUZZ_SEED=${seed})`);
  const started = process.hrtime.bigint();
  let result: ReturnType<typeof runHostileFuzz>;
  try {
    result = runHostileFuzz({ seed, cases });
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(message.includes(`seed ${seed}`) ? message : `seed ${seed}: ${message}`, {
      cause: error,
    });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.diagnostic(`${JSON.stringify(result)} in ${seconds.toFixed(1)} s`);
  const bySeed = (what: string): string => `${what} (seed ${seed})`;
  assert.equal(result.cases, cases, bySeed('cases run'));
  // Every kind of case must reach both outcomes, or it tests nothing.
  const { framing, messages, backing, bar } = result;
  assert.ok(
    framing.messages > 1000 && framing.protocolErrors > 100,
    bySeed(JSON.stringify(framing)),
  );
  assert.ok(messages.memTables > 500 && messages.devices > 5, bySeed(JSON.stringify(messages)));
  assert.ok(backing.kept > 10 && backing.refused > 10, bySeed(JSON.stringify(backing)));
  assert.ok(bar.ok > 100 && bar.invalid > 100, bySeed(JSON.stringify(bar)));
});
