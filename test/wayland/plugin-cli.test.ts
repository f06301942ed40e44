/**
 * `guestfb` as a process (the bin file run through its #! line): runs the pattern against the example compositor (in this process, on
 * a socket), stops on SIGTERM and prints its statistics; fails clearly without a display.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCompositor } from '../../examples/compositor/index.js';
import { poll } from '../helpers/wait.js';
import { useTempRuntimeDir } from './native-helpers.js';

const bin = fileURLToPath(new URL('../../../bin/guestfb.js', import.meta.url));

test('guestfb --source pattern shows a window, and SIGTERM prints the stats', async () => {
  const runtime = useTempRuntimeDir();
  const runtimeDir = runtime.dir;
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 320, height: 240, refreshMhz: 60000 }],
    socket: 'guestfb-cli-test',
    log: () => undefined,
  });
  try {
    // Run as a user runs it: the file itself, through its #! line.
    const child = spawn(
      bin,
      ['--source', 'pattern:160x120', '--rate', '30', '--display', 'guestfb-cli-test'],
      { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    // Wait for a few frames of the moving pattern to reach the compositor.
    await poll(() => compositor.stats().frameCallbacksDone >= 5 || child.exitCode !== null, {
      limitMs: 60_000,
    });
    assert.ok(
      compositor.stats().frameCallbacksDone >= 5,
      `frames reached the compositor: ${stderr}`,
    );
    assert.equal(compositor.stats().windows, 1);
    // The #! line hands node the V8 flag that keeps timed idle GCs out of the frame path.
    const commandLine = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(commandLine.includes('--no-memory-reducer'), commandLine.join(' '));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    const presented = Number(/frames presented: (\d+)/.exec(stdout)?.[1] ?? -1);
    assert.ok(presented >= 5, stdout);
    assert.match(stdout, /bytes copied: +\d+/);
    assert.match(stdout, /fallback: +.*udmabuf/);
    assert.match(stdout, /handoff latency: +p50 [\d.]+ µs, p99 [\d.]+ µs/);
    assert.match(stderr, /pattern: fallback: .*\n/);
    assert.match(stderr, /stopping \(SIGTERM\)/);
  } finally {
    await compositor.close();
    runtime.remove();
  }
});

test('guestfb without a display says so and exits 1', () => {
  const env = { ...process.env };
  delete env.WAYLAND_DISPLAY;
  const result = spawnSync(process.execPath, [bin, '--source', 'pattern:16x16'], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /WAYLAND_DISPLAY is not set and no --display given/);
});

test('guestfb against a display that does not exist fails clearly', () => {
  const result = spawnSync(
    process.execPath,
    [
      bin,
      '--source',
      'pattern:16x16',
      '--display',
      path.join(os.tmpdir(), 'no-such-wayland-socket'),
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(result.status, 1);
  assert.match(result.stderr, /^guestfb: .+/m);
});

test('guestfb doctor --json reads the compositor and names the path', async () => {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-doctor-'));
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 64, height: 64, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  // The doctor connects by path; the in-process compositor listens on a socket in runtimeDir.
  const saved = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = runtimeDir;
  const socket = compositor.display.addSocket('guestfb-doctor');
  if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = saved;
  try {
    const child = spawn(
      process.execPath,
      [bin, 'doctor', '--json', '--display', path.join(runtimeDir, socket)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(status, 0);
    const report = JSON.parse(stdout) as {
      path: string;
      verdict: string;
      udmabuf: { usable: boolean };
      compositor: { dmabufVersion: number; dmabufFormats: string; globals: string[] };
      findings: { area: string; status: string; fix?: string }[];
    };
    assert.equal(report.compositor.dmabufVersion, 4);
    assert.match(report.compositor.dmabufFormats, /XR24:LINEAR/);
    assert.ok(report.compositor.globals.includes('xdg_wm_base'));
    assert.equal(report.path, report.udmabuf.usable ? 'dmabuf' : 'shm');
    for (const finding of report.findings) {
      if (finding.status === 'missing') assert.ok(finding.fix, `${finding.area} has a fix`);
    }
  } finally {
    await compositor.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
});

test('guestfb --vhost-user-gpu listens for QEMU and --duration ends the run', async () => {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-vhost-cli-'));
  const saved = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = runtimeDir;
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 64, height: 64, refreshMhz: 60000 }],
    socket: 'guestfb-vhost-cli',
    log: () => undefined,
  });
  if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = saved;
  const gpuSocket = path.join(runtimeDir, 'gpu.sock');
  try {
    const child = spawn(
      process.execPath,
      [
        bin,
        '--vhost-user-gpu',
        `testvm=${gpuSocket}`,
        '--display',
        path.join(runtimeDir, 'guestfb-vhost-cli'),
        '--duration',
        '1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(status, 0, stderr);
    assert.match(stderr, /testvm: vhost-user-gpu back-end listening on .*gpu\.sock/);
    assert.match(stderr, /stopping \(--duration 1\)/);
    // No guest connected: nothing presented, nothing copied.
    assert.match(stdout, /frames presented: 0/);
    assert.match(stdout, /bytes copied: +0/);
  } finally {
    await compositor.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
});

/** Runs the CLI to completion with no Wayland display in its environment. */
function run(args: string[]) {
  const env = { ...process.env };
  delete env.WAYLAND_DISPLAY;
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 60_000 });
}

test('the CLI exits 2 with a message on bad arguments', () => {
  for (const args of [['--source', 'nope'], ['--what'], [], ['doctor', 'x']]) {
    const result = run(args);
    assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, /^guestfb: .+\nTry 'guestfb --help'\.\n$/);
    assert.equal(result.stdout, '');
  }
});

test('the CLI prints help and version and exits 0', () => {
  const help = run(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: guestfb/);
  assert.match(help.stdout, /--vhost-user-gpu/);
  const doctorHelp = run(['doctor', '--help']);
  assert.equal(doctorHelp.status, 0);
  assert.match(doctorHelp.stdout, /^Usage: guestfb doctor/);
  const version = run(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^guestfb \d+\.\d+\.\d+\n$/);
});
