// vhost-user back-end program conventions, libvirt domain names, the descriptor and the handoff's
// control messages (the handoff itself, with real sockets and processes: test/system).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BackendUsageError,
  parseBackendArgs,
  runBackendProgram,
  type BackendProgramSpec,
} from '../../plugin/backend-program/conventions.js';
import { gpuProgram } from '../../plugin/backend-program/gpu.js';
import { domainNameFromFds } from '../../plugin/backend-program/libvirt-domain.js';
import {
  checkDomainXml,
  chooseGpuBackend,
  gpuDescriptor,
  gpuProgramPath,
  installDescriptor,
  listDescriptors,
} from '../../plugin/backend-program/descriptor.js';
import {
  encodeMessage,
  MessageReader,
  parseRequest,
} from '../../plugin/backend-program/handoff.js';
import { parseCommandLine } from '../../plugin/cli.js';

const inputSpec: BackendProgramSpec = {
  program: 'test-input',
  type: 'input',
  description: 'an input back-end',
  features: ['evdev-path', 'no-grab'],
  options: {
    'evdev-path': { value: true, help: 'evdev device' },
    'no-grab': { value: false, help: 'do not grab' },
  },
};

test('--print-capabilities prints the type and features and ignores every other argument', () => {
  assert.deepEqual(parseBackendArgs(gpuProgram, ['--print-capabilities']), {
    action: 'print-capabilities',
    json: '{"type":"gpu","features":[]}',
  });
  const input = parseBackendArgs(inputSpec, ['--bogus', '--print-capabilities', 'x']);
  assert.equal(input.action, 'print-capabilities');
  assert.deepEqual(JSON.parse((input as { json: string }).json), {
    type: 'input',
    features: ['evdev-path', 'no-grab'],
  });
});

test('--fd and --socket-path: one of them, not both; type options parsed per spec', () => {
  assert.deepEqual(parseBackendArgs(gpuProgram, ['--fd=7']), {
    action: 'serve',
    channel: { kind: 'fd', fd: 7 },
    options: {},
  });
  assert.deepEqual(parseBackendArgs(gpuProgram, ['--socket-path', '/run/x.sock']), {
    action: 'serve',
    channel: { kind: 'socket-path', path: '/run/x.sock' },
    options: {},
  });
  assert.deepEqual(
    parseBackendArgs(inputSpec, ['--fd=9', '--evdev-path=/dev/input/event3', '--no-grab']),
    {
      action: 'serve',
      channel: { kind: 'fd', fd: 9 },
      options: { 'evdev-path': '/dev/input/event3', 'no-grab': true },
    },
  );
  const errors: [string[], RegExp][] = [
    [[], /one of --fd=FDNUM or --socket-path=PATH is required/],
    [['--fd=3', '--socket-path=/x'], /exclude each other/],
    [['--fd=abc'], /not a file descriptor number/],
    [['--fd=1'], /stdin, stdout and stderr/],
    [['--fd=3', '--fd=4'], /given twice/],
    [['--fd=3', '--virgl'], /--virgl is not supported: guestfb does no 3D/],
    [['--fd=3', '--render-node=/dev/dri/renderD128'], /--render-node is not supported/],
    [['--fd=3', '--evdev-path=/dev/x'], /unknown option --evdev-path/],
    [['--fd=3', 'extra'], /unexpected argument "extra"/],
  ];
  for (const [argv, message] of errors) {
    assert.throws(
      () => parseBackendArgs(gpuProgram, argv),
      (error: unknown) => {
        assert.ok(error instanceof BackendUsageError, `${argv.join(' ')}: a usage error`);
        assert.match(error.message, message);
        return true;
      },
    );
  }
});

test('runBackendProgram: exit 0 with capabilities, 2 on bad arguments, 1 when serving fails', async () => {
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t) };
  const never = () => Promise.reject(new Error('must not serve'));
  assert.equal(
    await runBackendProgram(gpuProgram, ['--print-capabilities', '--fd=x'], never, io),
    0,
  );
  assert.deepEqual(out, ['{"type":"gpu","features":[]}\n']);
  assert.equal(await runBackendProgram(gpuProgram, ['--virgl'], never, io), 2);
  assert.match(err.join(''), /guestfb-vhost-user-gpu: --virgl is not supported/);
  const failing = () => Promise.reject(new Error('--fd=5: ENOTSOCK'));
  assert.equal(await runBackendProgram(gpuProgram, ['--fd=5'], failing, io), 1);
  assert.match(err.at(-1)!, /--fd=5: ENOTSOCK/);
});

test('the domain name comes from the log file, else from the pid file libvirt keeps open', () => {
  const links = (entries: [number, string][]) => new Map(entries);
  assert.equal(
    domainNameFromFds(
      links([
        [1, '/var/log/libvirt/qemu/My Desktop.log'],
        [2, '/var/log/libvirt/qemu/My Desktop.log'],
      ]),
    ),
    'My Desktop',
  );
  assert.equal(
    domainNameFromFds(links([[2, '/home/u/.cache/libvirt/qemu/log/win11.log']])),
    'win11',
  );
  assert.equal(
    domainNameFromFds(
      links([
        [1, '/dev/null'],
        [2, '/dev/null'],
        [5, '/run/libvirt/qemu/4-gfb-one-video0-vhost-user-gpu.pid'],
      ]),
    ),
    'gfb-one',
  );
  assert.equal(
    domainNameFromFds(
      links([
        [1, '/dev/null'],
        [7, 'socket:[1234]'],
      ]),
    ),
    null,
  );
});

test('the descriptor: installed atomically, found by file name order, chosen by capabilities', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-descriptor-'));
  try {
    const system = path.join(dir, 'usr-share');
    const user = path.join(dir, 'config', 'qemu', 'vhost-user');
    mkdirSync(system);
    // QEMU's own back-end sorts after guestfb's; a broken gpu descriptor before both is skipped.
    writeFileSync(
      path.join(system, '50-qemu-gpu.json'),
      JSON.stringify({ description: 'QEMU vhost-user-gpu', type: 'gpu', binary: '/bin/true' }),
    );
    writeFileSync(
      path.join(system, '10-broken.json'),
      JSON.stringify({ description: 'gone', type: 'gpu', binary: path.join(dir, 'missing') }),
    );
    writeFileSync(path.join(system, '30-fs.json'), JSON.stringify({ type: 'fs', binary: '/x' }));
    const file = installDescriptor(user, gpuDescriptor(gpuProgramPath()));
    assert.equal(path.basename(file), '40-guestfb-gpu.json');
    const written = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    assert.equal(written.type, 'gpu');
    assert.equal(written.binary, gpuProgramPath());
    assert.deepEqual(
      listDescriptors([system, user]).map((found) => path.basename(found.file)),
      ['10-broken.json', '30-fs.json', '40-guestfb-gpu.json', '50-qemu-gpu.json'],
    );
    const session = await chooseGpuBackend([system, user]);
    assert.equal(session.chosen?.file, file, 'guestfb wins for the session daemon');
    assert.match(session.skipped.join('\n'), /10-broken\.json: .*missing --print-capabilities/);
    // /bin/true prints no JSON: the system daemon (without the user folder) finds nothing usable.
    const systemChoice = await chooseGpuBackend([system]);
    assert.equal(systemChoice.chosen, null);
    assert.match(systemChoice.skipped.join('\n'), /50-qemu-gpu\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('domain XML: shared memfd memory and a vhostuser video are required, virgl is refused', () => {
  const good = `<domain type='kvm'><name>desk</name>
    <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
    <devices><video><driver name='vhostuser'/><model type='virtio' heads='1'/></video></devices></domain>`;
  assert.deepEqual(checkDomainXml(good), { problems: [], name: 'desk' });
  const bare = `<domain type='kvm'><name>desk</name><devices><video><model type='qxl'/></video></devices></domain>`;
  const check = checkDomainXml(bare);
  assert.deepEqual(
    check.problems.map((p) => p.summary),
    [
      'guest RAM must be shared memfd so the back-end can map it (no <memoryBacking>)',
      'no vhost-user virtio video device',
    ],
  );
  assert.match(check.problems[0]!.fix, /<source type='memfd'\/><access mode='shared'\/>/);
  const privateMemfd = good.replace("mode='shared'", "mode='private'");
  assert.match(checkDomainXml(privateMemfd).problems[0]!.summary, /access mode 'private'/);
  const virgl = good.replace("heads='1'/>", "heads='1'><acceleration accel3d='yes'/></model>");
  assert.match(checkDomainXml(virgl).problems[0]!.summary, /virgl/);
  assert.equal(checkDomainXml('not xml <').problems.length, 1);
});

test('CLI: install-libvirt scopes and run --libvirt without sources', () => {
  assert.deepEqual(parseCommandLine(['install-libvirt']), {
    command: 'install-libvirt',
    scope: 'user',
    folder: undefined,
  });
  assert.deepEqual(parseCommandLine(['install-libvirt', '--system']), {
    command: 'install-libvirt',
    scope: 'system',
    folder: undefined,
  });
  assert.throws(() => parseCommandLine(['install-libvirt', '--user', '--system']), /exclude/);
  const run = parseCommandLine(['--libvirt']);
  assert.equal(run.command, 'run');
  assert.equal((run as { libvirt: boolean }).libvirt, true);
  assert.deepEqual((run as { sources: unknown[] }).sources, []);
  assert.throws(() => parseCommandLine([]), /--libvirt/);
});

test('control messages: framed JSON, bounded, validated', () => {
  const reader = new MessageReader();
  const frame = encodeMessage({ version: 1, type: 'gpu', name: 'vm' });
  assert.equal(reader.push(frame.subarray(0, 3)), undefined);
  assert.deepEqual(reader.push(frame.subarray(3)), { version: 1, type: 'gpu', name: 'vm' });
  const huge = Buffer.alloc(8);
  huge.writeUInt32LE(4097, 0);
  assert.throws(() => new MessageReader().push(huge), /4097 bytes \(limit 4096\)/);
  assert.throws(() => parseRequest({ version: 2, type: 'gpu', name: 'x' }), /protocol version 2/);
  assert.throws(() => parseRequest({ version: 1, type: 'GPU!', name: 'x' }), /device type/);
  assert.throws(() => parseRequest({ version: 1, type: 'gpu', name: '' }), /names no domain/);
  assert.throws(
    () => parseRequest({ version: 1, type: 'gpu', name: 'a\nb' }),
    /control characters/,
  );
});
