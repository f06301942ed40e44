// --ivshmem and --bar-size on `guestfb` and `guestfb-compositor`: parsing, and the compositor
// binary as a real ivshmem server showing what a (fake) guest writes into the BAR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fd } from '../../native/fd.js';
import { parseCommandLine, UsageError } from '../../plugin/cli.js';
import {
  parseCli,
  UsageError as CompositorUsageError,
} from '../../examples/compositor/cli-args.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { createCompositor } from '../../examples/compositor/index.js';
import { poll } from '../helpers/wait.js';
import { DrmFormat } from '../../plugin/common/formats.js';
import { writeBarHeader } from '../../plugin/sources/shared-bar/header.js';
import { useTempRuntimeDir } from './native-helpers.js';

const guestfbBin = fileURLToPath(new URL('../../../bin/guestfb.js', import.meta.url));
const compositorBin = fileURLToPath(new URL('../../../bin/guestfb-compositor.js', import.meta.url));

test('guestfb --ivshmem [NAME=]SOCKET [--bar-size SIZE]', () => {
  const command = parseCommandLine(['--ivshmem', 'win=/run/a.sock', '--ivshmem', 'b.sock']);
  assert.equal(command.command, 'run');
  if (command.command !== 'run') return;
  assert.deepEqual(command.sources, [
    { kind: 'ivshmem', name: 'win', socket: '/run/a.sock', barSize: 64 * 2 ** 20 },
    { kind: 'ivshmem', name: 'bar1', socket: 'b.sock', barSize: 64 * 2 ** 20 },
  ]);
  const sized = parseCommandLine(['--ivshmem', 's', '--bar-size', '32M']);
  assert.equal(
    sized.command === 'run' && sized.sources[0]!.kind === 'ivshmem' && sized.sources[0]!.barSize,
    32 * 2 ** 20,
  );
  for (const [argv, message] of [
    [['--ivshmem', 's', '--bar-size', '48M'], /not a power of two/],
    [['--ivshmem', 's', '--bar-size', '4k'], /not a power of two from 8K/],
    [['--ivshmem', 's', '--bar-size', 'lots'], /not a power of two/],
    [['--source', 'pattern', '--bar-size', '64M'], /--bar-size needs --ivshmem/],
    [['--ivshmem', 'a b=s'], /guest name "a b"/],
    [['--ivshmem', 'x='], /names no socket path/],
  ] as [string[], RegExp][]) {
    assert.throws(
      () => parseCommandLine(argv),
      (e: Error) => e instanceof UsageError && message.test(e.message),
      argv.join(' '),
    );
  }
});

test('guestfb-compositor --ivshmem parses the same way', () => {
  const options = parseCli(['--ivshmem', 'vm=x.sock', '--bar-size', '1G']);
  assert.deepEqual(options.ivshmem, [
    { kind: 'ivshmem', name: 'vm', socket: 'x.sock', barSize: 2 ** 30 },
  ]);
  assert.deepEqual(parseCli([]).ivshmem, []);
  assert.throws(() => parseCli(['--bar-size', '64M']), CompositorUsageError);
  assert.throws(() => parseCli(['--ivshmem', 's', '--bar-size', '3M']), CompositorUsageError);
});

test('guestfb-compositor --ivshmem serves the BAR and shows what the guest writes', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bar-cli-'));
  const socketPath = path.join(dir, 'ivshmem.sock');
  const shots = path.join(dir, 'shots');
  const child = spawn(
    process.execPath,
    [
      compositorBin,
      '--headless',
      '--output',
      '64x32',
      '--socket',
      'wayland-bar-cli',
      '--ivshmem',
      `vm=${socketPath}`,
      '--bar-size',
      '1M',
      '--screenshot-dir',
      shots,
      '--screenshot-every',
      '20',
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const received: number[] = [];
  let conn = -1;
  let bar: ArrayBuffer | null = null;
  try {
    await poll(() => /ivshmem server on/.test(stderr), { limitMs: 30_000 });
    assert.match(stderr, /guestfb vm: ivshmem server on .*ivshmem-doorbell,chardev=ivsh/);
    conn = fd.unixConnect(socketPath);
    // version, id, shm, guestfb's doorbell, own vector: one fd-carrying recv per message.
    const fds: number[] = [];
    while (received.length < 5) {
      assert.ok(fd.pollReadable(conn, 20_000), 'server messages');
      const chunk = fd.unixRecv(conn, 8);
      if (!chunk) continue;
      assert.equal(chunk.data.length, 8);
      received.push(
        Number(new DataView(chunk.data.buffer, chunk.data.byteOffset).getBigInt64(0, true)),
      );
      fds.push(...chunk.fds);
    }
    assert.deepEqual(received, [0, 1, -1, 0, 1]);
    bar = fd.mmap(fds[0]!, 0, 1 << 20, true);
    new Uint32Array(bar, 4096, 64 * 32).fill(0xff3366cc);
    writeBarHeader(new DataView(bar), {
      fourcc: DrmFormat.XRGB8888,
      width: 64,
      height: 32,
      stride: 256,
      offset: 4096,
      sequence: 2,
    });
    fd.eventfdWrite(fds[1]!, 1);
    const shown = await poll(
      () => {
        const newest = readdirSyncSafe(shots).sort().at(-1);
        if (!newest) return false;
        try {
          const image = decodePng(readFileSync(path.join(shots, newest)));
          return image.pixel(0, 0) === 0x3366cc && image.pixel(63, 31) === 0x3366cc;
        } catch {
          return false; // a screenshot being written
        }
      },
      { limitMs: 30_000 },
    );
    assert.ok(shown, `the guest's pixels in a screenshot; compositor log:\n${stderr}`);
    for (const x of fds) fd.close(x);
  } finally {
    if (bar) fd.munmap(bar);
    if (conn >= 0) fd.close(conn);
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
  assert.match(stderr, /guestfb vm: framebuffer 64x32 stride 256 at BAR offset 4096/);
  rmSync(dir, { recursive: true, force: true });
});

/** Connects as QEMU would; returns [shm fd, guestfb's doorbell eventfd, own eventfd]. */
function connectAsQemu(socketPath: string): { conn: number; fds: number[]; values: number[] } {
  const conn = fd.unixConnect(socketPath);
  const fds: number[] = [];
  const values: number[] = [];
  while (values.length < 5) {
    assert.ok(fd.pollReadable(conn, 20_000), 'server messages');
    const chunk = fd.unixRecv(conn, 8);
    if (!chunk) continue;
    assert.equal(chunk.data.length, 8);
    values.push(
      Number(new DataView(chunk.data.buffer, chunk.data.byteOffset).getBigInt64(0, true)),
    );
    fds.push(...chunk.fds);
  }
  return { conn, fds, values };
}

test('guestfb --ivshmem as a client of a compositor: the guest frame, zero bytes copied', async () => {
  const runtime = useTempRuntimeDir();
  const dir = runtime.dir;
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 32, height: 16, refreshMhz: 60000 }],
    socket: 'guestfb-bar-cli',
    log: () => undefined,
  });
  const socketPath = path.join(dir, 'ivshmem.sock');
  const child = spawn(
    process.execPath,
    [
      guestfbBin,
      '--ivshmem',
      `win=${socketPath}`,
      '--bar-size',
      '64k',
      '--display',
      'guestfb-bar-cli',
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  let qemu: ReturnType<typeof connectAsQemu> | null = null;
  let bar: ArrayBuffer | null = null;
  try {
    await poll(() => /ivshmem server on/.test(stderr), { limitMs: 30_000 });
    assert.match(stderr, /win: ivshmem server on /);
    qemu = connectAsQemu(socketPath);
    assert.deepEqual(qemu.values, [0, 1, -1, 0, 1]);
    bar = fd.mmap(qemu.fds[0]!, 0, 65536, true);
    new Uint32Array(bar, 4096, 32 * 16).fill(0xff00ff80);
    writeBarHeader(new DataView(bar), {
      fourcc: DrmFormat.XRGB8888,
      width: 32,
      height: 16,
      stride: 128,
      offset: 4096,
      sequence: 2,
    });
    fd.eventfdWrite(qemu.fds[1]!, 1);
    const shown = await poll(
      () => {
        const image = decodePng(compositor.screenshot('HEADLESS-1'));
        return image.pixel(0, 0) === 0x00ff80 && image.pixel(31, 15) === 0x00ff80;
      },
      { limitMs: 30_000 },
    );
    assert.ok(shown, `the guest's pixels on the output; guestfb log:\n${stderr}`);
  } finally {
    if (bar) fd.munmap(bar);
    if (qemu) {
      for (const x of qemu.fds) fd.close(x);
      fd.close(qemu.conn);
    }
    child.kill('SIGTERM');
  }
  const status = await exited;
  await compositor.close();
  runtime.remove();
  assert.equal(status, 0, stderr);
  assert.match(stdout, /bytes copied: +0\b/);
  assert.ok(Number(/frames presented: (\d+)/.exec(stdout)?.[1] ?? 0) >= 1, stdout);
});

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
