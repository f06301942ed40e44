// The kernel tier's pure parts: the module load order. (Its cpio writer and apt code are the QEMU
// tier's, tested in qemu-tier.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadOrder } from '../vm/kernel-tier.js';
import { pathsUnderTmp } from '../vm/harness.js';

test('loadOrder puts every module after its dependencies, once', () => {
  // modules.dep lists dependencies so that the last one loads first.
  const modules = new Map([
    ['9p', { deps: ['9pnet', 'netfs'] }],
    ['9pnet', { deps: ['netfs'] }],
    ['9pnet_virtio', { deps: ['9pnet', 'netfs'] }],
    ['netfs', { deps: [] }],
    ['overlay', { deps: [] }],
  ]);
  assert.deepEqual(loadOrder(['9pnet_virtio', '9p', 'overlay'], modules), [
    'netfs',
    '9pnet',
    '9pnet_virtio',
    '9p',
    'overlay',
  ]);
  assert.throws(() => loadOrder(['missing'], modules), /not in modules.dep/);
});

test('paths under /tmp are carried into the guest, outermost only', () => {
  assert.deepEqual(
    pathsUnderTmp(['/tmp/ci.x/repo', '/tmp/ci.x/repo/sub', '/home/u/.cache/guestfb', '/tmp/c/']),
    ['/tmp/ci.x/repo', '/tmp/c'],
  );
  assert.deepEqual(pathsUnderTmp(['/tmp', '/tmpfoo/x', '/work/repo']), []);
});
