// The kernel tier's pure parts: the module load order. (Its cpio writer and apt code are the QEMU
// tier's, tested in qemu-tier.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadOrder } from '../vm/kernel-tier.js';
import { guestTestVerdict, pathsUnderTmp } from '../vm/harness.js';

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

test('a guest test file passes only when at least one test ran and none was skipped or todo', () => {
  const totals = (counts: Record<string, number>): string =>
    Object.entries({
      tests: 0,
      suites: 0,
      pass: 0,
      fail: 0,
      cancelled: 0,
      skipped: 0,
      todo: 0,
      ...counts,
    })
      .map(([name, value]) => `ℹ ${name} ${value}`)
      .join('\n') + '\nℹ duration_ms 12.5\n';
  assert.equal(guestTestVerdict(`✔ a (1ms)\n${totals({ tests: 2, pass: 2 })}`), undefined);
  assert.equal(guestTestVerdict(totals({})), 'no test ran');
  assert.equal(guestTestVerdict(totals({ tests: 2, pass: 1, skipped: 1 })), '1 test(s) skipped');
  assert.equal(guestTestVerdict(totals({ tests: 1, todo: 1 })), '1 test(s) marked todo');
  assert.equal(guestTestVerdict(totals({ tests: 1, fail: 1 })), '1 failed, 0 cancelled');
  assert.match(guestTestVerdict('exited before the summary\n') ?? '', /no test totals/);
});
