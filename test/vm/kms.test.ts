// The kernel tier for the compositor's KMS backend: runs test/vm/guest/kms.vmtest.ts in a VM with
// vkms loaded (direct scanout of a udmabuf, composition fallbacks, writeback capture, restore).
import { test } from 'node:test';
import { runGuestTestFile } from './harness.js';

test('compositor on vkms: direct scanout, composition fallbacks, KMS state restored', async (t) => {
  await runGuestTestFile(t, 'dist/test/vm/guest/kms.vmtest.js', { modules: ['vkms'] });
});
