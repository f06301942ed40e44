import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, UsageError } from '../../plugin/cli.js';

test('run options parse with defaults', () => {
  const command = parseCommandLine(['--source', 'pattern']);
  assert.deepEqual(command, {
    command: 'run',
    sources: [{ kind: 'pattern', width: 1280, height: 720 }],
    inputs: [],
    display: undefined,
    rate: 60,
    layout: 'scattered',
    noDmabuf: false,
    statsInterval: 0,
    duration: 0,
    guestName: undefined,
    libvirt: false,
  });
  const full = parseCommandLine([
    'run',
    '--source=pattern:320x200',
    '--vhost-user-gpu',
    'win=/tmp/a=b.sock',
    '--vhost-user-gpu',
    './x=y.sock',
    '--display',
    'wayland-9',
    '--rate',
    '30',
    '--layout',
    'contiguous',
    '--no-dmabuf',
    '--duration',
    '2.5',
    '--name',
    'debian',
  ]);
  assert.equal(full.command, 'run');
  if (full.command !== 'run') return;
  assert.deepEqual(full.sources, [
    { kind: 'pattern', width: 320, height: 200 },
    { kind: 'vhost-user-gpu', name: 'win', socket: '/tmp/a=b.sock' },
    { kind: 'vhost-user-gpu', name: 'vm1', socket: './x=y.sock' },
  ]);
  assert.equal(full.display, 'wayland-9');
  assert.equal(full.rate, 30);
  assert.equal(full.layout, 'contiguous');
  assert.equal(full.noDmabuf, true);
  assert.equal(full.duration, 2.5);
  assert.equal(full.guestName, 'debian');
});

test('usage mistakes throw UsageError with a message that names the problem', () => {
  const cases: [string[], RegExp][] = [
    [[], /no source given/],
    [['--source', 'nope'], /unknown source "nope"/],
    [['--source', 'pattern:0x10'], /outside/],
    [['--source', 'pattern:10x'], /unknown source/],
    [['--source', 'pattern', '--rate', 'fast'], /--rate: "fast" is not a number/],
    [['--source', 'pattern', '--rate', '0'], /outside/],
    [['--source', 'pattern', '--layout', 'tiled'], /--layout/],
    [['--source', 'pattern', '--bogus'], /bogus/],
    [['--source', 'pattern', 'extra'], /extra/],
    [['--vhost-user-gpu', 'name='], /names no socket/],
    [['--vhost-user-gpu', 'bad name=/x'], /guest name/],
    [['--vhost-user-gpu', 'a=/g', '--vhost-user-input', 'b=/i'], /no guest "b" \(guests: a\)/],
    [['--source', 'pattern', '--vhost-user-input', '/i'], /no guest "vm0" \(guests: none\)/],
    [
      ['--ivshmem', 'a=/g', '--vhost-user-input', 'a=/i', '--vhost-user-input', 'a=/j'],
      /guest "a" has two input devices/,
    ],
    [['doctor', '--frobnicate'], /doctor: .*frobnicate/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseCommandLine(args),
      (error: unknown) => error instanceof UsageError && message.test(error.message),
      args.join(' '),
    );
  }
});

test('--vhost-user-input belongs to a guest by NAME, or to the n-th unnamed GPU', () => {
  const command = parseCommandLine([
    '--vhost-user-gpu',
    '/run/gpu.sock',
    '--ivshmem',
    'bar=/run/bar.sock',
    '--vhost-user-input',
    '/run/input.sock',
    '--vhost-user-input',
    'bar=./in=put.sock',
  ]);
  assert.equal(command.command, 'run');
  if (command.command !== 'run') return;
  assert.deepEqual(command.inputs, [
    { name: 'vm0', socket: '/run/input.sock' },
    { name: 'bar', socket: './in=put.sock' },
  ]);
});

test('help and doctor parse', () => {
  assert.equal(parseCommandLine(['--help']).command, 'help');
  assert.equal(parseCommandLine(['-h']).command, 'help');
  const doctorHelp = parseCommandLine(['doctor', '--help']);
  assert.equal(doctorHelp.command, 'help');
  assert.deepEqual(parseCommandLine(['doctor', '--json']), {
    command: 'doctor',
    display: undefined,
    json: true,
    domainXml: undefined,
  });
});
