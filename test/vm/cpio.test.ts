// The initramfs writer the kernel and QEMU tiers boot with, checked against cpio(1) itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { buildCpio } from '../../examples/qemu/cpio.js';

test('buildCpio writes an archive cpio(1) lists and extracts byte for byte', () => {
  const data = Buffer.from('hello initramfs\n'.repeat(3) + 'odd');
  const archive = buildCpio([
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: 'bin/tool', data, mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'tool' },
    { kind: 'dir', path: 'dev' },
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
  ]);
  assert.equal(archive.length % 4, 0);
  const listing = spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });
  assert.ifError(listing.error); // cpio(1) missing: scripts/setup.sh installs it
  assert.equal(listing.status, 0, listing.stderr);
  const lines = listing.stdout.trim().split('\n');
  assert.equal(lines.length, 5);
  assert.match(lines[0], /^drwxr-xr-x .* bin$/);
  assert.match(lines[1], new RegExp(`^-rwxr-xr-x .* ${data.length} .* bin/tool$`));
  assert.match(lines[2], /^lrwxrwxrwx .* bin\/sh -> tool$/);
  assert.match(lines[4], /^crw------- .* 5,\s+1 .* dev\/console$/);
  const extracted = spawnSync('cpio', ['-i', '--quiet', '--to-stdout', 'bin/tool'], {
    input: archive,
  });
  assert.equal(extracted.status, 0);
  assert.deepEqual(extracted.stdout, data);
});
