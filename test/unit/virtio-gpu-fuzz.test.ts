import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../fuzz/virtio-gpu-fuzzer.js';
import { fuzzSeed, runSeeded } from '../helpers/fuzz-seed.js';

const seed = fuzzSeed();
const cases = 100_000;

test(`fuzz: ${cases} random and mutated chains and commands (seed ${seed})`, (t) => {
  const result = runSeeded(t, seed, () => runFuzz({ seed, cases }));
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
