// Runs inside the kernel-tier VM (started by test/vm/harness.test.ts through runGuestTestFile):
// proves node, the guest environment and udmabuf are there, and that a failing guest test
// fails the host test (GUESTFB_SELFCHECK_FAIL=1 makes the second test fail on purpose).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';

test('node runs inside the kernel-tier guest', () => {
  assert.equal(process.env.GUESTFB_IN_VM, '1');
  assert.equal(process.pid > 1, true);
  assert.match(os.release(), /-amd64$/);
  assert.equal(statSync('/dev/udmabuf').isCharacterDevice(), true);
  assert.equal(readFileSync('/sys/module/udmabuf/parameters/list_limit', 'utf8').trim(), '1024');
});

test('selfcheck failure switch', () => {
  assert.notEqual(
    process.env.GUESTFB_SELFCHECK_FAIL,
    '1',
    'failing on purpose: GUESTFB_SELFCHECK_FAIL=1',
  );
});
