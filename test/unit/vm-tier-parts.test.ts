// The kernel tier's pure parts: the newc cpio writer (checked with cpio(1)), the deb822 parser,
// and the module load order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpioNewc } from '../vm/cpio.js';
import { parseDeb822 } from '../vm/apt.js';
import { loadOrder } from '../vm/kernel-tier.js';

test('cpioNewc writes an archive cpio(1) lists and extracts byte for byte', (t) => {
  const data = Buffer.from('hello initramfs\n'.repeat(3) + 'odd');
  const archive = cpioNewc([
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: 'bin/tool', data, mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'tool' },
    { kind: 'dir', path: 'dev' },
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
  ]);
  assert.equal(archive.length % 4, 0);
  const listing = spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });
  if (listing.error) {
    t.skip(`cpio(1) is not installed (scripts/setup.sh installs it): ${listing.error.message}`);
    return;
  }
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

test('cpioNewc rejects paths that escape the archive root', () => {
  assert.throws(() => cpioNewc([{ kind: 'dir', path: '../etc' }]), /bad cpio path/);
  assert.throws(() => cpioNewc([{ kind: 'dir', path: '/' }]), /bad cpio path/);
});

test('parseDeb822 reads apt sources with comments and continuation lines', () => {
  const paragraphs = parseDeb822(
    [
      'Types: deb',
      '# a comment between fields',
      'URIs: http://mirror.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
      'Package: linux-headers-x',
      'Depends: a (>= 1), b | c,',
      ' d',
      '',
    ].join('\n'),
  );
  assert.equal(paragraphs.length, 2);
  assert.equal(paragraphs[0].get('uris'), 'http://mirror.example/debian');
  assert.equal(paragraphs[0].get('suites'), 'bookworm bookworm-updates');
  assert.equal(paragraphs[1].get('depends'), 'a (>= 1), b | c,\nd');
});

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
