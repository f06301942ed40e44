// Kernel tier: boots the backports kernel (real udmabuf, vkms) and runs the udmabuf and vkms
// tests inside it. The two boots run in parallel.
import { test } from 'node:test';
import { runGuestTestFile } from './harness.js';

test('udmabuf and vkms inside the kernel-tier VM', { concurrency: 2 }, async (t) => {
  await Promise.all([
    t.test('udmabuf: coalescing, both-way bytes, typed refusals', async (sub) => {
      await runGuestTestFile(sub, 'dist/test/vm/guest/udmabuf.vmtest.js');
    }),
    t.test('vkms: a udmabuf scanned out and captured by the writeback connector', async (sub) => {
      await runGuestTestFile(sub, 'dist/test/vm/guest/vkms.vmtest.js', { modules: ['vkms'] });
    }),
  ]);
});
