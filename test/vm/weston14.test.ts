// Kernel tier, against a compositor nobody here wrote: fetches weston 14 and backports Mesa on
// the host (first run only; cached), then boots the VM and runs the weston 14 test inside it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGuestTestFile } from './harness.js';
import { ensureWeston14 } from './weston14.js';

test('weston 14 takes the guest dma-buf and shows its pixels exactly (inside the kernel-tier VM)', async (t) => {
  const tree = await ensureWeston14((message) =>
    process.stderr.write(`[guestfb weston14] ${message}\n`),
  );
  // The manifest makes a second call a cache hit: nothing fetched or unpacked again.
  assert.equal((await ensureWeston14()).fromCache, true);
  t.diagnostic(`${tree.versionString} from ${tree.fromCache ? 'the cache' : 'bookworm-backports'}`);
  await runGuestTestFile(t, 'dist/test/vm/guest/weston14.vmtest.js', {
    env: { GUESTFB_WESTON14_CACHE: tree.cacheDir },
    timeoutMs: 600_000,
  });
});
