import { test } from 'node:test';
import assert from 'node:assert/strict';
import { USAGE, UsageError, parseCli, parseOutput } from '../../examples/compositor/cli-args.js';

test('compositor CLI options', () => {
  const options = parseCli([
    '--headless',
    '--socket',
    'guestfb-test',
    '--output',
    '1920x1080',
    '--output',
    '800x600@75',
    '--screenshot-dir',
    'shots',
    '--screenshot-every',
    '500',
  ]);
  assert.equal(options.headless, true);
  assert.equal(options.socket, 'guestfb-test');
  assert.deepEqual(options.outputs, [
    { name: 'HEADLESS-1', width: 1920, height: 1080, refreshMhz: 60000 },
    { name: 'HEADLESS-2', width: 800, height: 600, refreshMhz: 75000 },
  ]);
  assert.equal(options.screenshotDir, 'shots');
  assert.equal(options.screenshotEveryMs, 500);
  assert.equal(parseCli([]).outputs[0].width, 1920);
  assert.equal(parseCli(['--help']).help, true);
  assert.equal(parseOutput('640x480@59.94', 0).refreshMhz, 59940);
  const sockets = parseCli([
    '--ivshmem',
    '/s',
    '--ivshmem-peers',
    '2',
    '--socket-mode',
    '0660',
    '--socket-group',
    '1000',
  ]);
  assert.deepEqual(sockets.socketAccess, { mode: 0o660, group: 1000 });
  assert.equal(sockets.ivshmemPeers, 2);
  assert.deepEqual(
    parseCli([
      '--limit',
      'maxResources=8',
      '--limit',
      'sliceMs=1',
      '--limit',
      'maxDimension=4096',
      '--limit',
      'logBurst=20',
      '--limit',
      'logPerSecond=2',
    ]).gpuLimits,
    {
      limits: { maxResources: 8, maxDimension: 4096 },
      budget: { sliceMs: 1 },
      log: { burst: 20, perSecond: 2 },
    },
  );
  assert.match(USAGE, /maxDimension \(1\.\.16384\).*logBurst, logPerSecond/s);
  assert.deepEqual(parseCli(['--vhost-user-gpu', 'vm=/g,heads=2,size=1024x600']).vhostUserGpu, [
    { kind: 'vhost-user-gpu', name: 'vm', socket: '/g', heads: 2, width: 1024, height: 600 },
  ]);
  assert.match(USAGE, /size=WxH: every head's preferred mode/);
  assert.match(USAGE, /--limit NAME=VALUE/);
  assert.deepEqual(parseCli([]).socketAccess, {});
  assert.match(USAGE, /--socket-mode OCTAL .*default 0600/s);
});

test('compositor CLI rejects bad input with a usage error', () => {
  for (const argv of [
    ['--output', '1920'],
    ['--output', '0x10'],
    ['--output', '10x10@0'],
    ['--socket', '../escape'],
    ['--screenshot-every', '10'],
    ['--screenshot-dir', 'd', '--screenshot-every', '-5'],
    ['--bogus'],
    ['positional'],
    ['--socket-mode', '888'],
    ['--socket-group', 'x/y'],
    ['--ivshmem-peers', '2'],
    ['--ivshmem', '/s', '--ivshmem-peers', '100'],
    ['--limit', 'maxResources=-1'],
    ['--vhost-user-gpu', 'vm=/g,size=10x10'],
    ['--vhost-user-gpu', 'vm=/g,size=wide'],
    ['--limit', 'maxDimension=16385'],
    ['--limit', 'maxDimension=0'],
    ['--limit', 'maxDimension=1k'],
    ['--limit', 'logBurst=0'],
    ['--limit', 'logPerSecond=1.5'],
  ]) {
    assert.throws(() => parseCli(argv), UsageError, argv.join(' '));
  }
});
