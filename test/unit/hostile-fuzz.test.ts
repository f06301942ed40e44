import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runHostileFuzz } from '../fuzz/hostile-fuzzer.js';
import { fuzzSeed, runSeeded } from '../helpers/fuzz-seed.js';

const seed = fuzzSeed();
const cases = 20_000;

test(`hostile fuzz: ${cases} framing, message, backing and BAR cases (seed ${seed})`, (t) => {
  const result = runSeeded(t, seed, () => runHostileFuzz({ seed, cases }));
  const bySeed = (what: string): string => `${what} (seed ${seed})`;
  assert.equal(result.cases, cases, bySeed('cases run'));
  // Every kind of case must reach both outcomes, or it tests nothing.
  const { framing, messages, backing, bar } = result;
  assert.ok(
    framing.messages > 1000 && framing.protocolErrors > 100,
    bySeed(JSON.stringify(framing)),
  );
  assert.ok(
    messages.memTables > 500 &&
      messages.regionChanges > 300 &&
      messages.memoryAccepted > 100 &&
      messages.memoryRefused > 500 &&
      messages.devices > 2,
    bySeed(JSON.stringify(messages)),
  );
  assert.ok(backing.kept > 10 && backing.refused > 10, bySeed(JSON.stringify(backing)));
  assert.ok(bar.ok > 100 && bar.invalid > 100, bySeed(JSON.stringify(bar)));
});
