// The kernel tier for the shared BAR source: runs test/vm/guest/shared-bar.vmtest.ts in a VM
// whose kernel has a real /dev/udmabuf (see test/vm/harness.ts).
import { test } from 'node:test';
import { runGuestTestFile } from './harness.js';

test('shared BAR: the ivshmem memfd -> udmabuf -> example compositor, zero copies', async (t) => {
  await runGuestTestFile(t, 'dist/test/vm/guest/shared-bar.vmtest.js', { modules: [] });
});
