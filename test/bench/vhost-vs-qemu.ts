/**
 * guestfb's vhost-user-gpu backend against QEMU's own `vhost-user-gpu` backend, on the same
 * guest workload: the test guest's drawpattern at 30 Hz with full-frame damage (every frame is a
 * TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole framebuffer), at 1280x800, 1920x1080 and
 * 3840x2160.
 *
 * Measured: on-CPU time (utime + stime of every thread, from /proc/<pid>/stat) of the backend's
 * process between drawpattern's "frame 0 shown" and its "N frames in" lines (a first, short
 * drawpattern run warms up both backends), divided by the frames in between. Each guestfb
 * variant runs in a child node process of its own, so the QEMU launcher (this process) is not
 * counted:
 *   qemu      QEMU's vhost-user-gpu (copies each update into its image and into a socket message)
 *   backend   guestfb's backend alone (nothing consumes its events: the protocol cost)
 *   plugin    guestfb's backend + plugin, presenting to the example compositor, which runs in a
 *             second child so its share (rendering the frames) is reported separately
 * Kinds and resolutions are interleaved in every round; medians over rounds are reported.
 * The QEMU frontend process itself is not counted for either backend.
 *
 *   npm run bench:vhost [-- --rounds 3] [-- --frames 300] [-- --json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  bootGuest,
  ensureGuest,
  ensureQemu,
  probeKvm,
  startQemuVhostUserGpu,
  type GuestImage,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { runStandalone, type GuestfbPlugin } from '../../plugin/index.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';

const thisFile = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(thisFile), '../../..');

type Kind = 'qemu' | 'backend' | 'plugin';
const kinds: Kind[] = ['qemu', 'backend', 'plugin'];
const resolutions: [number, number][] = [
  [1280, 800],
  [1920, 1080],
  [3840, 2160],
];
const WARMUP_FRAMES = 30;

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    rounds: { type: 'string' },
    frames: { type: 'string' },
    child: { type: 'string' },
    socket: { type: 'string' },
    display: { type: 'string' },
    size: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

// --- child: guestfb's backend (and plugin) in a process of its own ---------------------------

interface ChildStats {
  bytesCopied: number;
  framesPresented: number;
  flushes: number;
}

async function runChild(mode: string): Promise<void> {
  const [width, height] = (values.size ?? '1280x800').split('x').map(Number);
  const backend = createVhostUserGpuBackend({
    socketPath: values.socket!,
    role: 'listen',
    width,
    height,
    name: 'bench',
    log: (level, message) => {
      if (level === 'warn' || level === 'error') process.stderr.write(`${level}: ${message}\n`);
    },
  });
  let plugin: GuestfbPlugin | null = null;
  if (mode === 'plugin') {
    plugin = await runStandalone({
      display: values.display!,
      sources: [{ name: 'bench', source: backend }],
      log: (line) => process.stderr.write(`plugin: ${line}\n`),
    });
  }
  const stats = (): ChildStats => ({
    bytesCopied: plugin ? plugin.stats().bytesCopied : (backend.stats().bytesCopied ?? 0),
    framesPresented: plugin ? plugin.stats().framesPresented : 0,
    flushes: backend.stats()['cmd.RESOURCE_FLUSH'] ?? 0,
  });
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'stats') process.stdout.write(`${JSON.stringify(stats())}\n`);
  });
  lines.on('close', () => {
    plugin?.stop();
    backend.close();
    process.exit(0);
  });
}

// --- parent -----------------------------------------------------------------------------------

/** utime + stime of all threads of `pid`, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (comm) may hold spaces: count from the closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of proc(5)
  return ticks / clockTicks;
}

let clockTicks = 100;

interface Spawned {
  child: ChildProcess;
  output: () => string;
  lines: AsyncIterableIterator<string>;
  stop(): Promise<void>;
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv = process.env): Spawned {
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    output: () => output,
    lines,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

async function nextLine(spawned: Spawned, what: string): Promise<string> {
  const next = await spawned.lines.next();
  if (next.done) throw new Error(`${what}: child exited\n${spawned.output()}`);
  return next.value;
}

async function startCompositor(dir: string, width: number, height: number) {
  const runtimeDir = path.join(dir, 'runtime');
  rmSync(runtimeDir, { recursive: true, force: true });
  const env = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  mkdirSync(runtimeDir, { mode: 0o700 });
  const socket = 'guestfb-bench';
  const spawned = spawnNode(
    [
      path.join(repoRoot, 'dist/examples/compositor/cli.js'),
      '--headless',
      '--socket',
      socket,
      '--output',
      `${width}x${height}@60`,
    ],
    env,
  );
  const display = path.join(runtimeDir, socket);
  while (!existsSync(display)) {
    if (spawned.child.exitCode !== null) throw new Error(`compositor exited:\n${spawned.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { spawned, display, pid: spawned.child.pid! };
}

interface RunResult {
  msPerFrame: number;
  compositorMsPerFrame: number | null;
  bytesCopiedPerFrame: number | null;
  framesPresented: number | null;
  frames: number;
}

async function runOnce(
  tier: QemuTier,
  guest: GuestImage,
  dir: string,
  kind: Kind,
  width: number,
  height: number,
  frames: number,
): Promise<RunResult> {
  const socket = path.join(dir, `${kind}.sock`);
  rmSync(socket, { force: true });
  let backendPid: number;
  let stopBackend: () => Promise<void>;
  let childStats: (() => Promise<ChildStats>) | null = null;
  let compositor: Awaited<ReturnType<typeof startCompositor>> | null = null;
  if (kind === 'qemu') {
    const backend = startQemuVhostUserGpu(tier, socket);
    await backend.ready;
    backendPid = backend.pid;
    stopBackend = async () => {
      backend.kill('SIGKILL');
      await backend.exited;
    };
  } else {
    // --no-memory-reducer as the guestfb commands run (their #! line).
    const args = [
      '--no-memory-reducer',
      thisFile,
      '--child',
      kind,
      '--socket',
      socket,
      '--size',
      `${width}x${height}`,
    ];
    if (kind === 'plugin') {
      compositor = await startCompositor(dir, width, height);
      args.push('--display', compositor.display);
    }
    const child = spawnNode(args);
    if ((await nextLine(child, 'guestfb child')) !== 'ready') {
      throw new Error(`guestfb child did not start:\n${child.output()}`);
    }
    backendPid = child.child.pid!;
    childStats = async () => {
      child.child.stdin!.write('stats\n');
      return JSON.parse(await nextLine(child, 'stats')) as ChildStats;
    };
    stopBackend = () => child.stop();
  }
  const qemu = bootGuest(tier, guest, {
    gpuSocket: socket,
    width,
    height,
    fbcon: false,
    guestCommand:
      `drawpattern --mode ${width}x${height} --fps 30 --frames ${WARMUP_FRAMES} && ` +
      `drawpattern --mode ${width}x${height} --fps 30 --frames ${frames} --hold`,
    timeoutMs: 15 * 60_000,
  });
  try {
    await qemu.waitForConsole(/frame 0 shown[\s\S]*frame 0 shown/);
    const cpu0 = cpuSeconds(backendPid);
    const comp0 = compositor ? cpuSeconds(compositor.pid) : 0;
    const stats0 = await childStats?.();
    await qemu.waitForConsole(new RegExp(`drawpattern: ${frames} frames in`));
    const cpu1 = cpuSeconds(backendPid);
    const comp1 = compositor ? cpuSeconds(compositor.pid) : 0;
    const stats1 = await childStats?.();
    // Frame 0 went out before the first mark; frames 1..N-1 are inside the window.
    const measured = frames - 1;
    return {
      msPerFrame: ((cpu1 - cpu0) * 1000) / measured,
      compositorMsPerFrame: compositor ? ((comp1 - comp0) * 1000) / measured : null,
      bytesCopiedPerFrame:
        stats0 && stats1 ? (stats1.bytesCopied - stats0.bytesCopied) / measured : null,
      framesPresented: stats0 && stats1 ? stats1.framesPresented - stats0.framesPresented : null,
      frames: measured,
    };
  } catch (error) {
    throw new Error(
      `${kind} ${width}x${height}: ${(error as Error).message}\n--- console:\n${qemu.console().slice(-2000)}`,
    );
  } finally {
    qemu.kill('SIGKILL');
    await qemu.exited;
    await stopBackend();
    await compositor?.spawned.stop();
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function main(): Promise<void> {
  if (values.help) {
    process.stdout.write(
      'Usage: npm run bench:vhost [-- --rounds N (3)] [-- --frames N (300)] [-- --json]\n',
    );
    return;
  }
  if (values.child) return runChild(values.child);
  const rounds = values.rounds ? Number(values.rounds) : 3;
  const frames = values.frames ? Number(values.frames) : 300;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50)
    throw new Error('--rounds must be an integer 1..50');
  if (!Number.isInteger(frames) || frames < 31 || frames > 100000)
    throw new Error('--frames must be an integer 31..100000');
  clockTicks = await new Promise<number>((resolve) => {
    const getconf = spawn('getconf', ['CLK_TCK'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    getconf.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    getconf.on('close', () => resolve(Number(text.trim()) || 100));
    getconf.on('error', () => resolve(100));
  });
  const progress = (message: string) => {
    if (!values.json) process.stderr.write(`bench: ${message}\n`);
  };
  const tier = await ensureQemu(progress);
  const guest = await ensureGuest(progress);
  const kvm = await probeKvm(tier, guest, progress);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bench-vhost-'));
  const samples = new Map<string, RunResult[]>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [width, height] of resolutions) {
        // Rotate the order each round so no kind always runs first (or on a warmer cache).
        const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]!);
        for (const kind of order) {
          progress(`round ${round + 1}/${rounds}: ${kind} at ${width}x${height}`);
          const result = await runOnce(tier, guest, dir, kind, width, height, frames);
          const key = `${width}x${height}/${kind}`;
          samples.set(key, [...(samples.get(key) ?? []), result]);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const udmabuf = existsSync('/dev/udmabuf');
  const summary = resolutions.map(([width, height]) => {
    const of = (kind: Kind) => samples.get(`${width}x${height}/${kind}`)!;
    const ms = (kind: Kind) => median(of(kind).map((r) => r.msPerFrame));
    const plugin = of('plugin');
    const frameBytes = width * height * 4;
    return {
      resolution: `${width}x${height}`,
      qemuMsPerFrame: ms('qemu'),
      guestfbBackendMsPerFrame: ms('backend'),
      guestfbPluginMsPerFrame: ms('plugin'),
      compositorMsPerFrame: median(plugin.map((r) => r.compositorMsPerFrame!)),
      /** QEMU backend ms / guestfb backend+plugin ms (compositor not included on either side). */
      ratio: ms('qemu') / ms('plugin'),
      ratioBackendOnly: ms('qemu') / ms('backend'),
      bytesCopiedPerFrame: {
        /** By construction (contrib/vhost-user-gpu): the transfer into its image + the update message. */
        qemu: 2 * frameBytes,
        guestfbBackend: median(of('backend').map((r) => r.bytesCopiedPerFrame ?? 0)),
        guestfbPlugin: median(plugin.map((r) => r.bytesCopiedPerFrame ?? 0)),
      },
      framesPresentedPerRun: plugin.map((r) => r.framesPresented),
      samplesMsPerFrame: Object.fromEntries(
        kinds.map((kind) => [kind, of(kind).map((r) => Number(r.msPerFrame.toFixed(3)))]),
      ),
    };
  });
  const note =
    `drawpattern 30 Hz, full damage, ${frames - 1} measured frames per run (after a ${WARMUP_FRAMES}-frame ` +
    `warm-up run); backend process CPU (utime+stime, /proc/<pid>/stat, ${1000 / clockTicks} ms ticks); ` +
    `median of ${rounds} interleaved rounds; guest on ${kvm.usable ? 'KVM' : 'TCG'}. ` +
    (udmabuf
      ? '/dev/udmabuf present: the plugin can use its zero-copy dma-buf path.'
      : 'No /dev/udmabuf on this host: the plugin uses its counted wl_shm fallback (copies the damaged ' +
        'rects); the zero-copy path needs the kernel tier (test/vm).');
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ note, udmabuf, resolutions: summary })}\n`);
    return;
  }
  process.stdout.write(`${note}\n\n`);
  process.stdout.write(
    'resolution  QEMU vhost-user-gpu  guestfb backend  guestfb backend+plugin  compositor  ratio QEMU/guestfb  bytes copied/frame (QEMU*, guestfb backend, +plugin)\n',
  );
  for (const r of summary) {
    const ms = (x: number) => `${x.toFixed(2)} ms`.padStart(9);
    process.stdout.write(
      `${r.resolution.padEnd(11)} ${ms(r.qemuMsPerFrame).padStart(19)} ${ms(r.guestfbBackendMsPerFrame).padStart(16)} ` +
        `${ms(r.guestfbPluginMsPerFrame).padStart(23)} ${ms(r.compositorMsPerFrame).padStart(11)} ` +
        `${r.ratio.toFixed(2).padStart(18)}  ${r.bytesCopiedPerFrame.qemu}, ${r.bytesCopiedPerFrame.guestfbBackend}, ` +
        `${Math.round(r.bytesCopiedPerFrame.guestfbPlugin)}\n`,
    );
  }
  process.stdout.write(
    '\n* QEMU: by construction (its TRANSFER_TO_HOST_2D copy into its image + the update message; the socket ' +
      'write is a third, kernel copy). guestfb: measured (plugin stats).\n' +
      `ratio: QEMU backend CPU / guestfb backend+plugin CPU; backend alone: ${summary
        .map((r) => `${r.resolution} ${r.ratioBackendOnly.toFixed(1)}x`)
        .join(', ')}.\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
