import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native, isSystemError } from '../../native/index.js';

test('the native addon loads and exposes defineInterfaces', () => {
  assert.equal(typeof native, 'object');
  assert.equal(isSystemError(new Error('plain')), false);
});
