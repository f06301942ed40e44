import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, RUN_HELP, UsageError } from '../../plugin/cli.js';

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
    socketAccess: {},
    ivshmemPeers: undefined,
    gpuLimits: { limits: {}, budget: {}, log: {} },
  });
  const full = parseCommandLine([
    'run',
    '--source=pattern:320x200',
    '--vhost-user-gpu',
    'win=/tmp/a=b.sock',
    '--vhost-user-gpu',
    './x=y.sock',
    '--vhost-user-gpu',
    'two=/tmp/two.sock,heads=2',
    '--vhost-user-gpu',
    'big=/tmp/big.sock,size=1920x1080,heads=3',
    '--vhost-user-gpu',
    '/tmp/sized.sock,heads=2,size=32x8192',
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
    { kind: 'vhost-user-gpu', name: 'two', socket: '/tmp/two.sock', heads: 2 },
    {
      kind: 'vhost-user-gpu',
      name: 'big',
      socket: '/tmp/big.sock',
      heads: 3,
      width: 1920,
      height: 1080,
    },
    {
      kind: 'vhost-user-gpu',
      name: 'vm4',
      socket: '/tmp/sized.sock',
      heads: 2,
      width: 32,
      height: 8192,
    },
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
    [['--vhost-user-gpu', 'a=/g,heads=0'], /heads=0 outside 1..16/],
    [['--vhost-user-gpu', 'a=/g,heads=17'], /heads=17 outside 1..16/],
    [['--vhost-user-gpu', 'a=/g,heads=x'], /heads=x outside 1..16/],
    [['--vhost-user-gpu', 'a=,heads=2'], /names no socket/],
    [['--vhost-user-gpu', 'a=/g,size=1024'], /size=1024 is not WxH with each side 32..8192/],
    [['--vhost-user-gpu', 'a=/g,size=0x600'], /size=0x600 is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size=31x600'], /size=31x600 is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size=8193x600'], /size=8193x600 is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size=800x-6'], /size=800x-6 is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size=1e3x600'], /size=1e3x600 is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size='], /size= is not WxH/],
    [['--vhost-user-gpu', 'a=/g,size=800x600,size=640x480'], /size= given twice/],
    [['--vhost-user-gpu', 'a=/g,heads=2,size=800x600,heads=2'], /heads= given twice/],
    [['--vhost-user-gpu', 'a=,size=800x600'], /names no socket/],
    [['--vhost-user-gpu', 'bad name=/x'], /guest name/],
    [['--vhost-user-gpu', 'a=/g', '--vhost-user-input', 'b=/i'], /no guest "b" \(guests: a\)/],
    [['--source', 'pattern', '--vhost-user-input', '/i'], /no guest "vm0" \(guests: none\)/],
    [
      ['--ivshmem', 'a=/g', '--vhost-user-input', 'a=/i', '--vhost-user-input', 'a=/j'],
      /guest "a" has two input devices/,
    ],
    [['doctor', '--frobnicate'], /doctor: .*frobnicate/],
    [['--source', 'pattern', '--socket-mode', '0668'], /--socket-mode: "0668" is not an octal/],
    [['--source', 'pattern', '--socket-mode', '1777'], /--socket-mode: "1777" is not an octal/],
    [['--source', 'pattern', '--socket-mode', 'rw'], /--socket-mode: "rw"/],
    [['--source', 'pattern', '--socket-group', 'a b'], /--socket-group: "a b" is neither/],
    [['--source', 'pattern', '--socket-group', '4294967295'], /gid 4294967295 is out of range/],
    [['--source', 'pattern', '--ivshmem-peers', '2'], /--ivshmem-peers needs --ivshmem/],
    [['--ivshmem', '/b', '--ivshmem-peers', '0'], /--ivshmem-peers: "0" is not a number/],
    [['--ivshmem', '/b', '--ivshmem-peers', '65'], /--ivshmem-peers: "65"/],
    [
      ['--source', 'pattern', '--limit', 'maxWidgets=3'],
      /--limit: "maxWidgets=3" is not NAME=VALUE/,
    ],
    [['--source', 'pattern', '--limit', 'maxResources'], /is not NAME=VALUE/],
    [
      ['--source', 'pattern', '--limit', 'maxResources=0'],
      /maxResources: "0" is not a positive integer/,
    ],
    [['--source', 'pattern', '--limit', 'maxResources=4k'], /not a positive integer/],
    [['--source', 'pattern', '--limit', 'maxResourceBytes=1T'], /not a positive size/],
    [['--source', 'pattern', '--limit', 'sliceMs=0'], /sliceMs: "0" is not a time/],
    [['--source', 'pattern', '--limit', 'toString=1'], /is not NAME=VALUE/],
    [
      ['--source', 'pattern', '--limit', 'maxDimension=16385'],
      /--limit maxDimension: "16385" is not a size of 1\.\.16384 pixels/,
    ],
    [['--source', 'pattern', '--limit', 'maxDimension=0'], /is not a size of 1\.\.16384/],
    [['--source', 'pattern', '--limit', 'maxDimension=2k'], /is not a size of 1\.\.16384/],
    [['--source', 'pattern', '--limit', 'logBurst=0'], /logBurst: "0" is not a positive integer/],
    [
      ['--source', 'pattern', '--limit', 'logPerSecond=1M'],
      /logPerSecond: "1M" is not a positive integer/,
    ],
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

test('--socket-mode, --socket-group and --ivshmem-peers', () => {
  const parse = (...args: string[]) => {
    const command = parseCommandLine(['--ivshmem', '/b', ...args]);
    assert.equal(command.command, 'run');
    return command.command === 'run' ? command : null;
  };
  assert.deepEqual(parse('--socket-mode', '0660', '--socket-group', 'kvm')?.socketAccess, {
    mode: 0o660,
    group: 'kvm',
  });
  assert.deepEqual(parse('--socket-mode', '600', '--socket-group', '0')?.socketAccess, {
    mode: 0o600,
    group: 0,
  });
  assert.deepEqual(parse('--socket-mode', '0o640')?.socketAccess, { mode: 0o640 });
  assert.equal(parse('--ivshmem-peers', '3')?.ivshmemPeers, 3);
  assert.deepEqual(
    parse(
      '--limit',
      'maxResources=256',
      '--limit',
      'maxResourceBytes=64M',
      '--limit',
      'maxTotalBackingBytes=1G',
      '--limit',
      'maxTotalSpans=1000',
      '--limit',
      'maxBackingEntries=2048',
      '--limit',
      'chainsPerSlice=64',
      '--limit',
      'sliceMs=0.5',
      '--limit',
      'maxDimension=8192',
      '--limit',
      'logBurst=5',
      '--limit',
      'logPerSecond=1',
    )?.gpuLimits,
    {
      limits: {
        maxResources: 256,
        maxResourceBytes: 64 * 2 ** 20,
        maxTotalBackingBytes: 2 ** 30,
        maxTotalSpans: 1000,
        maxBackingEntries: 2048,
        maxDimension: 8192,
      },
      budget: { chainsPerSlice: 64, sliceMs: 0.5 },
      log: { burst: 5, perSecond: 1 },
    },
  );
  assert.match(RUN_HELP, /--limit NAME=VALUE/);
  assert.match(RUN_HELP, /--socket-mode OCTAL .*\(default 0600/s);
  assert.match(RUN_HELP, /--socket-group NAME\|GID/);
  assert.match(RUN_HELP, /--ivshmem-peers N .*\(default 1/s);
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
