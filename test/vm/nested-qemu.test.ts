// The headline path with a real guest, proven in the kernel tier: inside the VM (real
// /dev/udmabuf), QEMU 10 boots the test guest with guestfb as its vhost-user-gpu back-end and
// ivshmem server; the guest's pages reach the example compositor and weston 14 as udmabuf
// dma-bufs with no byte copied (test/vm/guest/nested-qemu.vmtest.ts has the assertions).
// Everything the VM needs is fetched and built here on the host first, into the shared cache
// the VM sees read-only: QEMU 10, the test guest (kernel, initramfs), weston 14.
// Run alone: `node --test dist/test/vm/nested-qemu.test.js` (after `npm run build`).
import { test } from 'node:test';
import os from 'node:os';
import path from 'node:path';
import { ensureGuest, ensureQemu } from '../../examples/qemu/qemu.js';
import { runGuestTestFile } from './harness.js';
import { ensureWeston14 } from './weston14.js';

test('nested QEMU in the kernel tier: guest pages -> udmabuf -> example compositor and weston 14, 0 bytes copied', async (t) => {
  const progress = (message: string) => process.stderr.write(`[guestfb nested] ${message}\n`);
  const tier = await ensureQemu(progress);
  const guest = await ensureGuest(progress);
  const weston = await ensureWeston14(progress);
  t.diagnostic(`${tier.versionString}; guest ${guest.kernelRelease}; ${weston.versionString}`);
  const cacheHome = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  const result = await runGuestTestFile(t, 'dist/test/vm/guest/nested-qemu.vmtest.js', {
    // The guest's QEMU (256 MB of guest RAM), node, the compositor and weston share the VM.
    memoryMb: 3072,
    env: { XDG_CACHE_HOME: cacheHome, GUESTFB_WESTON14_CACHE: weston.cacheDir },
    // The nested boot runs under TCG twice over: minutes on a busy machine.
    timeoutMs: 25 * 60_000,
  });
  for (const line of result.stdout.split('\n')) {
    if (/QEMU start -> |frames presented|weston 14/.test(line)) t.diagnostic(line.trim());
  }
});
