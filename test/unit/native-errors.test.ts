import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { isSystemError } from '../../native/index.js';
import { fd } from '../../native/fd.js';

/** The error `body` throws (it must throw). */
function caught(body: () => unknown): unknown {
  try {
    body();
  } catch (error) {
    return error;
  }
  assert.fail('expected a throw');
}

test('a failed system call in the addon is a SystemError shaped like Node own ones', () => {
  const error = caught(() => fd.unixConnect('/nonexistent-guestfb-dir/socket'));
  assert.equal(isSystemError(error), true);
  assert.ok(isSystemError(error));
  assert.equal(error.code, 'ENOENT');
  assert.equal(error.errno, constants.errno.ENOENT);
  assert.equal(error.syscall, 'connect');
  assert.equal(error.message, 'connect: No such file or directory');
});

test('argument errors from the addon and plain errors are not SystemErrors', () => {
  const range = caught(() => fd.ftruncate(-1, 0));
  assert.ok(range instanceof RangeError);
  assert.equal((range as RangeError & { code?: string }).code, 'ERR_OUT_OF_RANGE');
  assert.equal(isSystemError(range), false);
  assert.equal(isSystemError(new Error('plain')), false);
  assert.equal(isSystemError({ syscall: 'open', code: 'ENOENT' }), false, 'not an Error at all');
});
