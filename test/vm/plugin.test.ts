// The kernel tier for the plugin: runs test/vm/guest/plugin-udmabuf.vmtest.ts in a VM whose
// kernel has a real /dev/udmabuf (see test/vm/harness.ts).
import { test } from 'node:test';
import { runGuestTestFile } from './harness.js';

test('plugin: scattered guest pages -> udmabuf -> example compositor, zero copies', async (t) => {
  await runGuestTestFile(t, 'dist/test/vm/guest/plugin-udmabuf.vmtest.js', { modules: [] });
});
