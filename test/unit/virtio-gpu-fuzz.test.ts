import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../fuzz/virtio-gpu-fuzzer.js';

// GUESTFB_FUZZ_SEED reproduces a run; the seed is printed either way.
const seed = process.env.GUESTFB_FUZZ_SEED
  ? Number(process.env.GUESTFB_FUZZ_SEED)
  : (Date.now() ^ (process.pid << 16)) >>> 0;
const cases = 100_000;

test(`fuzz: ${cases} random and mutated chains and commands (seed ${seed})`, (t) => {
  t.diagnostic(`seed ${seed} (rerun with GUESTFB_FUZZ_SEED=${seed})`);
  const started = process.hrtime.bigint();
  const result = runFuzz({ seed, cases });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.diagnostic(`${JSON.stringify(result)} in ${seconds.toFixed(1)} s`);
  assert.equal(result.cases, cases);
  // The generator must reach both outcomes and a spread of responses, or it tests nothing.
  assert.ok(result.drops > 100, `${result.drops} drops`);
  assert.ok((result.byResponse.OK_NODATA ?? 0) > 1000, 'successful commands');
  for (const error of [
    'ERR_UNSPEC',
    'ERR_INVALID_RESOURCE_ID',
    'ERR_INVALID_PARAMETER',
    'ERR_INVALID_SCANOUT_ID',
  ]) {
    assert.ok((result.byResponse[error] ?? 0) > 100, `${error}: ${result.byResponse[error]}`);
  }
  assert.ok(result.ringCorruptions > 50 && result.cursorCases > 1000);
});
