/**
 * guestfb's whole cost per guest frame on the zero-copy path, end to end, without a VM: a
 * synthetic QEMU + guest (synthetic-guest.ts, its own process) drives guestfb's vhost-user-gpu
 * back-end over real sockets, memfd guest RAM and eventfds; guestfb (its own process) runs the
 * back-end alone or the back-end + plugin presenting to the example compositor (a third
 * process). Only guestfb's process is measured (process.cpuUsage() of all its threads).
 *
 * Reported, in one run:
 *   - CPU µs per guest frame at 1280x800, 1920x1080 and 3840x2160, back-end only and
 *     back-end + plugin, guest at 30 Hz, full-frame damage, in steady state (after 1000 frames
 *     back to back; the snapshots' own GCs are not counted), and event-loop wake-ups per frame;
 *   - flush → commit handoff p50/p99 (wall, from the plugin's statistics) and the guest's
 *     kick → interrupt round trip;
 *   - syscalls per guest frame (strace -c -f on guestfb over a fixed number of frames);
 *   - heap used and open fds before and after a long unpaced run (--long-frames, 100,000);
 *   - 8 guests at 1080p@30 in one guestfb process: CPU per frame against one guest, and the
 *     worst guest's flush → commit p99;
 *   - the wake-up floor (wake-floor.ts): the CPU one wake-up at 30 Hz costs a C process and a
 *     Node process that do nothing but drain the kick and signal back. guestfb's frame is one
 *     such wake-up plus its work; what it costs above the Node floor is guestfb's own.
 *
 * On a host without /dev/udmabuf the guest's framebuffer is one contiguous span, which the
 * plugin shows through wl_shm on the guest memfd itself (the shmOnGuestRam opt-in): no pixel is
 * copied, as with a dma-buf.
 *
 *   node dist/test/bench/frame-cost.js [--json] [--frames 300] [--long-frames 100000] [--quick]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { Session } from 'node:inspector';
import { fd } from '../../native/fd.js';
import { parseStraceSummary, SYSCALL_PURPOSE, type SyscallCount } from './strace.js';
import { measureWakeFloor, type WakeFloor } from './wake-floor.js';
import { runStandalone, type GuestfbPlugin } from '../../plugin/index.js';
import {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
} from '../../plugin/sources/virtio-gpu/index.js';

const thisFile = fileURLToPath(import.meta.url);
const benchDir = path.dirname(thisFile);
const repoRoot = path.resolve(benchDir, '../../..');

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    frames: { type: 'string' },
    'long-frames': { type: 'string' },
    quick: { type: 'boolean' },
    /** Comma-separated WxH list instead of the three standard sizes (A/B runs). */
    sizes: { type: 'string' },
    /** CPU per frame only: no allocation count, strace, 8 guests or long run (A/B runs). */
    'per-frame-only': { type: 'boolean' },
    /** Comma-separated: backend, plugin (default both). */
    modes: { type: 'string' },
    /** Writes a V8 CPU profile of each guestfb process into this folder (--cpu-prof). */
    'cpu-prof-dir': { type: 'string' },
    /** Writes where the measured frames allocate (V8's sampling heap profiler) into FILE.MODE. */
    'alloc-sites': { type: 'string' },
    /** Extra Node/V8 flags for each guestfb process, space-separated (A/B runs of V8 flags). */
    'node-flags': { type: 'string' },
    compositor: { type: 'string' },
    child: { type: 'string' },
    socket: { type: 'string', multiple: true },
    size: { type: 'string' },
    display: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

// --- child: guestfb (back-end, optionally + plugin) ---------------------------------------

export interface GuestfbChildStats {
  /** Process CPU (all threads) when the request came, before the snapshot's own GC. */
  cpuUs: number;
  /** Process CPU after the snapshot's GC: a window starts here, so that GC is not counted. */
  cpuUsAfterGc: number;
  /** libuv loop iterations so far: each is one wake-up of the event loop. */
  loopIterations: number;
  /** Events (fd readiness) libuv delivered so far. */
  loopEvents: number;
  flushes: number;
  framesPresented: number;
  bytesCopied: number;
  /** flush → commit per window, µs, since the last `reset`. */
  windows: { p50: number | null; p99: number | null; samples: number }[];
  heapUsed: number;
  fds: number;
}

export interface Allocation {
  /** Bytes allocated in V8's young generation since `mark`. */
  bytes: number;
  /** Garbage collections since `mark` (the count is exact only when 0). */
  gcs: number;
  /** Event-loop wake-ups (libuv loop iterations) since `mark`, this request's own included. */
  loopIterations: number;
}

async function runChild(mode: string): Promise<void> {
  const [width, height] = (values.size ?? '1280x800').split('x').map(Number);
  const backends: VhostUserGpuBackend[] = (values.socket ?? []).map((socketPath, i) =>
    createVhostUserGpuBackend({
      socketPath,
      role: 'listen',
      width,
      height,
      name: `guest${i}`,
      log: (level, message) => {
        if (level === 'warn' || level === 'error') process.stderr.write(`${level}: ${message}\n`);
      },
    }),
  );
  let plugin: GuestfbPlugin | null = null;
  if (mode === 'plugin') {
    plugin = await runStandalone({
      display: values.display!,
      sources: backends.map((source, i) => ({ name: `guest${i}`, source })),
      log: (line) => process.stderr.write(`plugin: ${line}\n`),
      // Without udmabuf, the pool on the guest memfd is the zero-copy stand-in (opt-in: it shows
      // the compositor the synthetic guest's RAM before the framebuffer).
      shmOnGuestRam: true,
    });
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  const cpuNow = () => {
    const cpu = process.cpuUsage();
    return cpu.user + cpu.system;
  };
  const stats = (): GuestfbChildStats => {
    // A full GC costs milliseconds: read the CPU before it (a window ends here) and after it
    // (a window starts there), so no window counts the measurement's own collection.
    const cpuUs = cpuNow();
    const loop = performance.nodeTiming.uvMetricsInfo;
    gc?.();
    const cpuUsAfterGc = cpuNow();
    const snapshot = plugin?.stats();
    return {
      cpuUs,
      cpuUsAfterGc,
      loopIterations: loop.loopCount,
      loopEvents: loop.events,
      flushes: backends.reduce((sum, b) => sum + (b.stats()['cmd.RESOURCE_FLUSH'] ?? 0), 0),
      framesPresented: snapshot?.framesPresented ?? 0,
      bytesCopied: snapshot?.bytesCopied ?? 0,
      windows: (plugin?.presenter?.windows() ?? []).map((window) => ({
        p50: window.pacer.handoff.percentile(50),
        p99: window.pacer.handoff.percentile(99),
        samples: window.pacer.handoff.count,
      })),
      heapUsed: process.memoryUsage().heapUsed,
      fds: fd.openFdCount(),
    };
  };
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  // Allocation counting: after a full GC the young generation is empty; what it holds after N
  // frames is what they allocated, as long as no GC ran in between (counted, reported).
  let gcsSinceMark = 0;
  new PerformanceObserver((list) => (gcsSinceMark += list.getEntries().length)).observe({
    entryTypes: ['gc'],
  });
  const youngUsed = () =>
    v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!.space_used_size;
  let youngAtMark = 0;
  let loopsAtMark = 0;
  const loops = () => performance.nodeTiming.uvMetricsInfo.loopCount;
  // --alloc-sites: every allocation between mark and allocated, sampled at 8 bytes, collected
  // objects included (a frame's garbage is what this looks for).
  const sites = values['alloc-sites'] ? new Session() : null;
  sites?.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      sites!.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
    );
  lines.on('line', (line) => {
    if (line === 'mark' && sites) {
      void post('HeapProfiler.startSampling', {
        samplingInterval: 8,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    }
    if (line === 'allocated' && sites) {
      void post('HeapProfiler.stopSampling').then((result) =>
        writeFileSync(
          `${values['alloc-sites']!}.${mode}`,
          allocationSites(result as SamplingResult),
        ),
      );
    }
    if (line === 'mark') {
      gc?.();
      // The GC's own entry is delivered asynchronously: let it arrive before counting.
      setTimeout(() => {
        gcsSinceMark = 0;
        youngAtMark = youngUsed();
        loopsAtMark = loops();
        process.stdout.write('ok\n');
      }, 50);
    }
    if (line === 'allocated') {
      const allocation: Allocation = {
        bytes: youngUsed() - youngAtMark,
        gcs: gcsSinceMark,
        loopIterations: loops() - loopsAtMark,
      };
      process.stdout.write(`${JSON.stringify(allocation)}\n`);
    }
    if (line === 'stats') process.stdout.write(`${JSON.stringify(stats())}\n`);
    if (line === 'reset') {
      for (const window of plugin?.presenter?.windows() ?? []) window.pacer.handoff.clear();
      process.stdout.write('ok\n');
    }
  });
  lines.on('close', () => {
    plugin?.stop();
    for (const backend of backends) backend.close();
    process.exit(0);
  });
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}
type SamplingResult = { profile: { head: SamplingNode } };

/** Bytes allocated per call stack (innermost five frames), largest first. */
function allocationSites(result: SamplingResult): string {
  const bytes = new Map<string, number>();
  const walk = (node: SamplingNode, stack: string[]) => {
    const frame = node.callFrame;
    const here = [
      ...stack,
      `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`,
    ];
    if (node.selfSize > 0) {
      const key = here.slice(-5).reverse().join(' <- ');
      bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(result.profile.head, []);
  return [...bytes]
    .sort((a, b) => b[1] - a[1])
    .map(([stack, size]) => `${size}\t${stack}`)
    .join('\n');
}

// --- parent -------------------------------------------------------------------------------

interface Spawned {
  child: ChildProcess;
  output: () => string;
  next(what: string): Promise<string>;
  send(line: string): void;
  stop(): Promise<void>;
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv = process.env): Spawned {
  return spawnCommand(process.execPath, args, env);
}

function spawnCommand(command: string, args: string[], env: NodeJS.ProcessEnv): Spawned {
  const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    output: () => output,
    async next(what) {
      const line = await lines.next();
      if (line.done) throw new Error(`${what}: child exited\n${output}`);
      return line.value;
    },
    send(line) {
      child.stdin!.write(`${line}\n`);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        if (command !== process.execPath) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/**
 * weston (pixman, headless) when installed: it reads a wl_shm buffer in place and keeps it until
 * the next one, as compositors treat dma-bufs. The example compositor copies every wl_shm commit
 * (its CPU is not counted, but on two cores it delays frame callbacks).
 */
const compositorKind =
  values.compositor ??
  (spawnSync('weston', ['--version'], { stdio: 'ignore' }).status === 0 ? 'weston' : 'example');

function startCompositor(runtimeDir: string, width: number, height: number): Spawned {
  const env = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  if (compositorKind === 'weston') {
    const config = path.join(runtimeDir, 'weston.ini');
    writeFileSync(
      config,
      '[shell]\nanimation=none\nstartup-animation=none\nfocus-animation=none\n' +
        'close-animation=none\npanel-position=none\n',
    );
    return spawnCommand(
      'weston',
      [
        '--backend=headless-backend.so',
        '--use-pixman',
        `--width=${width}`,
        `--height=${height}`,
        '--socket=guestfb-bench',
        '--idle-time=0',
        `--config=${config}`,
      ],
      env,
    );
  }
  // Frame callbacks at up to 1000 Hz, so the compositor never holds a 30 Hz guest back.
  return spawnNode(
    [
      path.join(repoRoot, 'dist/examples/compositor/cli.js'),
      '--headless',
      '--socket',
      'guestfb-bench',
      '--output',
      `${width}x${height}@1000`,
    ],
    env,
  );
}

interface RunResult {
  frames: number;
  wallMs: number;
  roundTripUs: { p50: number; p99: number; max: number };
}

/** One guestfb process, its compositor and its synthetic guests; torn down by `stop`. */
async function startSetup(
  dir: string,
  mode: 'backend' | 'plugin',
  width: number,
  height: number,
  guests: number,
) {
  const runtimeDir = path.join(dir, 'runtime');
  rmSync(runtimeDir, { recursive: true, force: true });
  mkdirSync(runtimeDir, { mode: 0o700 });
  const started: Spawned[] = [];
  const stop = async () => {
    for (const spawned of started.reverse()) await spawned.stop();
  };
  try {
    // --no-memory-reducer as the guestfb commands run (their #! line): without it V8's timed
    // idle GCs land in the measured frames.
    const args = [
      '--expose-gc',
      '--no-memory-reducer',
      thisFile,
      '--child',
      mode,
      '--size',
      `${width}x${height}`,
    ];
    if (values['alloc-sites']) args.push('--alloc-sites', path.resolve(values['alloc-sites']));
    const nodeFlags = values['node-flags']?.split(' ').filter(Boolean) ?? [];
    args.unshift(...nodeFlags);
    const profileDir = values['cpu-prof-dir'];
    if (profileDir)
      args.unshift('--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`);
    const sockets = Array.from({ length: guests }, (_, i) => path.join(dir, `gpu${i}.sock`));
    for (const socket of sockets) {
      rmSync(socket, { force: true });
      args.push('--socket', socket);
    }
    if (mode === 'plugin') {
      const compositor = startCompositor(runtimeDir, width, height);
      started.push(compositor);
      const display = path.join(runtimeDir, 'guestfb-bench');
      while (!existsSync(display)) {
        if (compositor.child.exitCode !== null)
          throw new Error(`compositor exited:\n${compositor.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      args.push('--display', display);
    }
    const guestfb = spawnNode(args);
    started.push(guestfb);
    if ((await guestfb.next('guestfb')) !== 'ready')
      throw new Error(`guestfb did not start:\n${guestfb.output()}`);
    const driver = spawnNode([
      path.join(benchDir, 'synthetic-guest.js'),
      '--size',
      `${width}x${height}`,
      ...sockets.flatMap((socket) => ['--socket', socket]),
    ]);
    started.push(driver);
    if ((await driver.next('synthetic guest')) !== 'ready')
      throw new Error(`synthetic guest did not start:\n${driver.output()}\n${guestfb.output()}`);
    return {
      guestfbPid: guestfb.child.pid!,
      async stats(): Promise<GuestfbChildStats> {
        guestfb.send('stats');
        return JSON.parse(await guestfb.next('guestfb stats')) as GuestfbChildStats;
      },
      async markAllocations(): Promise<void> {
        guestfb.send('mark');
        await guestfb.next('guestfb mark');
      },
      async allocated(): Promise<Allocation> {
        guestfb.send('allocated');
        return JSON.parse(await guestfb.next('guestfb allocated')) as Allocation;
      },
      async resetLatency(): Promise<void> {
        guestfb.send('reset');
        await guestfb.next('guestfb reset');
      },
      async run(frames: number, fps: number): Promise<RunResult> {
        driver.send(`run ${frames} ${fps}`);
        const line = await driver.next('synthetic guest run');
        if (!line.startsWith('done ')) throw new Error(`synthetic guest: ${line}`);
        return JSON.parse(line.slice(5)) as RunResult;
      },
      output: () => `${guestfb.output()}\n${driver.output()}`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Measured {
  cpuUsPerFrame: number;
  /** Event-loop wake-ups (libuv loop iterations) of guestfb per guest frame. */
  wakeUpsPerFrame: number;
  /** fd events libuv delivered per guest frame (kick, Wayland socket, ...). */
  loopEventsPerFrame: number;
  /** guest frames (one TRANSFER_TO_HOST_2D + RESOURCE_FLUSH each) per guest */
  frames: number;
  flushes: number;
  framesPresented: number;
  bytesCopiedPerFrame: number;
  handoffP50Us: number | null;
  /** the worst window's p99 */
  handoffP99Us: number | null;
  roundTripUs: RunResult['roundTripUs'];
}

async function measure(
  setup: Awaited<ReturnType<typeof startSetup>>,
  frames: number,
  fps: number,
  guests: number,
): Promise<Measured> {
  await warmUp(setup, fps);
  await setup.resetLatency();
  const before = await setup.stats();
  const run = await setup.run(frames, fps);
  const after = await setup.stats();
  const guestFrames = frames * guests;
  const p50s = after.windows.map((w) => w.p50 ?? 0);
  const p99s = after.windows.map((w) => w.p99 ?? 0);
  return {
    cpuUsPerFrame: (after.cpuUs - before.cpuUsAfterGc) / guestFrames,
    // (the stats request itself is one wake-up, on stdin)
    wakeUpsPerFrame: (after.loopIterations - before.loopIterations - 1) / guestFrames,
    loopEventsPerFrame: (after.loopEvents - before.loopEvents - 1) / guestFrames,
    frames,
    flushes: after.flushes - before.flushes,
    framesPresented: after.framesPresented - before.framesPresented,
    bytesCopiedPerFrame: (after.bytesCopied - before.bytesCopied) / guestFrames,
    handoffP50Us: p50s.length ? Math.max(...p50s) : null,
    handoffP99Us: p99s.length ? Math.max(...p99s) : null,
    roundTripUs: run.roundTripUs,
  };
}

/**
 * Steady state before measuring: frames back to back until V8 has optimized the frame path (as
 * minutes of a guest's use would; the first few hundred frames run in the interpreter and
 * pay for compiling), then a second at the measured rate.
 */
async function warmUp(setup: Awaited<ReturnType<typeof startSetup>>, fps: number): Promise<void> {
  await setup.run(WARM_UP_FRAMES, 0);
  await setup.run(fps, fps);
}

const WARM_UP_FRAMES = 1000;

/** Young-generation bytes guestfb allocates per guest frame, over `frames` frames. */
async function measureAllocations(
  setup: Awaited<ReturnType<typeof startSetup>>,
  frames: number,
  fps: number,
) {
  await warmUp(setup, fps);
  await setup.markAllocations();
  await setup.run(frames, fps);
  const allocated = await setup.allocated();
  return { bytesPerFrame: allocated.bytes / frames, frames, gcs: allocated.gcs };
}

/** strace -c -f on guestfb while the guest sends `frames` frames; counts per guest frame. */
async function countSyscalls(
  setup: Awaited<ReturnType<typeof startSetup>>,
  frames: number,
  fps: number,
  dir: string,
): Promise<SyscallCount[] | string> {
  if (spawnSync('strace', ['-V'], { stdio: 'ignore' }).status !== 0) {
    return 'strace not installed (scripts/setup.sh installs it)';
  }
  await warmUp(setup, fps);
  const out = path.join(dir, 'strace.txt');
  const strace = spawn('strace', ['-c', '-f', '-o', out, '-p', String(setup.guestfbPid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let straceErr = '';
  strace.stderr.setEncoding('utf8').on('data', (chunk: string) => (straceErr += chunk));
  // strace says "Process N attached" (for each thread) once it traces.
  const attachDeadline = Date.now() + 10_000;
  while (!/attached/.test(straceErr)) {
    if (strace.exitCode !== null || Date.now() > attachDeadline) {
      return `strace could not attach: ${straceErr.trim() || 'no output'}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 200)); // every thread attached
  await setup.run(frames, fps);
  const exited = new Promise((resolve) => strace.once('exit', resolve));
  strace.kill('SIGINT');
  await exited;
  return parseStraceSummary(readFileSync(out, 'utf8'), frames).map((count) => ({
    ...count,
    why: SYSCALL_PURPOSE[count.name] ?? 'not expected on the frame path',
  }));
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

async function main(): Promise<void> {
  if (values.help) {
    process.stdout.write(
      'Usage: node dist/test/bench/frame-cost.js [--json] [--frames N (300)] [--long-frames N (100000)] [--quick]\n' +
        '       [--sizes WxH,... --modes backend,plugin --per-frame-only] (a subset, for A/B runs)\n' +
        '       [--cpu-prof-dir DIR] (a V8 CPU profile of each guestfb process)\n',
    );
    return;
  }
  if (values.child) return runChild(values.child);
  const frames = values.frames ? Number(values.frames) : values.quick ? 90 : 300;
  const longFrames = values['long-frames']
    ? Number(values['long-frames'])
    : values.quick
      ? 5000
      : 100_000;
  if (!Number.isInteger(frames) || frames < 10) throw new Error('--frames must be an integer ≥ 10');
  if (!Number.isInteger(longFrames) || longFrames < 100)
    throw new Error('--long-frames must be an integer ≥ 100');
  const progress = (message: string) => {
    if (!values.json) process.stderr.write(`bench: ${message}\n`);
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bench-frames-'));
  const fps = 30;
  const resolutions: [number, number][] = values.sizes
    ? values.sizes.split(',').map((size) => {
        const [w, h] = size.split('x').map(Number);
        if (!(w! > 0 && h! > 0)) throw new Error(`--sizes: bad size ${size}`);
        return [w!, h!];
      })
    : [
        [1280, 800],
        [1920, 1080],
        [3840, 2160],
      ];
  const extras = !values['per-frame-only'];
  const modes = (values.modes ?? 'backend,plugin').split(',') as ('backend' | 'plugin')[];
  if (!modes.every((mode) => mode === 'backend' || mode === 'plugin'))
    throw new Error('--modes: backend and/or plugin');
  const perResolution: Record<string, { backend: Measured; plugin: Measured }> = {};
  let syscalls: SyscallCount[] | string = 'not measured';
  const allocations: Record<string, { bytesPerFrame: number; frames: number; gcs: number }> = {};
  let longRun: Record<string, number> | null = null;
  let eightGuests: Record<string, unknown> | null = null;
  let wakeFloor: WakeFloor | null = null;
  try {
    if (extras) {
      progress(`wake-up floor: C and Node processes kicked ${frames} times at ${fps} Hz`);
      wakeFloor = await measureWakeFloor(dir, fps, frames);
    }
    for (const [width, height] of resolutions) {
      const name = `${width}x${height}`;
      const result = {} as { backend: Measured; plugin: Measured };
      for (const mode of modes) {
        progress(`${mode} at ${name}, ${frames} frames at ${fps} Hz`);
        const setup = await startSetup(dir, mode, width, height, 1);
        try {
          result[mode] = await measure(setup, frames, fps, 1);
          if (width === 1920 && extras) {
            progress(`allocations per frame, 1920x1080 ${mode}`);
            allocations[mode] = await measureAllocations(setup, 100, fps);
          }
          if (mode === 'plugin' && width === 1920 && extras) {
            progress('syscalls per frame (strace -c -f), 1920x1080 back-end + plugin');
            syscalls = await countSyscalls(setup, Math.min(frames, 300), fps, dir);
          }
        } finally {
          await setup.stop();
        }
      }
      perResolution[name] = result;
    }

    if (extras) {
      progress(`8 guests at 1920x1080, ${fps} Hz each, one guestfb process`);
      const setup = await startSetup(dir, 'plugin', 1920, 1080, 8);
      try {
        const many = await measure(setup, frames, fps, 8);
        const one = perResolution['1920x1080']?.plugin;
        eightGuests = {
          guests: 8,
          cpuUsPerFrame: many.cpuUsPerFrame,
          oneGuestCpuUsPerFrame: one?.cpuUsPerFrame ?? null,
          /** 8-guest CPU per frame / one guest's */
          ratio: one ? many.cpuUsPerFrame / one.cpuUsPerFrame : null,
          worstHandoffP99Us: many.handoffP99Us,
          worstHandoffP50Us: many.handoffP50Us,
          framesPresented: many.framesPresented,
          flushes: many.flushes,
          roundTripUs: many.roundTripUs,
        };
      } finally {
        await setup.stop();
      }
    }

    if (extras) {
      progress(`long run: ${longFrames} frames back to back, 640x480 back-end + plugin`);
      const setup = await startSetup(dir, 'plugin', 640, 480, 1);
      try {
        await setup.run(WARM_UP_FRAMES, 0);
        const before = await setup.stats();
        const started = Date.now();
        await setup.run(longFrames, 0);
        const after = await setup.stats();
        longRun = {
          frames: longFrames,
          seconds: (Date.now() - started) / 1000,
          framesPresented: after.framesPresented - before.framesPresented,
          heapUsedBefore: before.heapUsed,
          heapUsedAfter: after.heapUsed,
          fdsBefore: before.fds,
          fdsAfter: after.fds,
          cpuUsPerFrame: (after.cpuUs - before.cpuUsAfterGc) / longFrames,
        };
      } finally {
        await setup.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const udmabuf = existsSync('/dev/udmabuf');
  const note =
    `synthetic QEMU + guest driving guestfb's back-end over vhost-user (real sockets, memfd RAM, ` +
    `eventfds); guest ${fps} Hz, TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole frame per ` +
    `frame; compositor: ${compositorKind === 'weston' ? 'weston (pixman, headless)' : 'the example compositor'}; guestfb process CPU (process.cpuUsage, all threads); compositor and guest not counted; ` +
    (udmabuf
      ? 'udmabuf present: the plugin hands dma-bufs over.'
      : 'no /dev/udmabuf: the plugin shows the contiguous guest memfd through wl_shm (zero-copy stand-in).');
  const result = {
    note,
    udmabuf,
    fps,
    resolutions: perResolution,
    syscallsPerFrame: syscalls,
    /** V8 young-generation bytes allocated per guest frame (1920x1080; valid when gcs is 0). */
    allocationsPerFrame: allocations,
    eightGuests,
    longRun,
    /** CPU per wake-up of processes that do nothing else (null with --per-frame-only). */
    wakeFloor,
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  printTable(result);
}

function printTable(result: {
  note: string;
  allocationsPerFrame: Record<string, { bytesPerFrame: number; frames: number; gcs: number }>;
  resolutions: Record<string, { backend: Measured; plugin: Measured }>;
  syscallsPerFrame: SyscallCount[] | string;
  eightGuests: Record<string, unknown> | null;
  longRun: Record<string, number> | null;
  wakeFloor: WakeFloor | null;
}): void {
  const out = (line = '') => process.stdout.write(`${line}\n`);
  out(result.note);
  out();
  out(
    'resolution  back-end µs/frame  back-end+plugin µs/frame  wake-ups/frame  handoff p50/p99 µs  kick→interrupt p50/p99 µs  bytes copied/frame',
  );
  for (const [name, r] of Object.entries(result.resolutions)) {
    const h = (v: number | null | undefined) =>
      v === null || v === undefined ? 'n/a' : v.toFixed(0);
    const w = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
    // (--modes may have left one of the two out)
    const backend = r.backend as Measured | undefined;
    const plugin = r.plugin as Measured | undefined;
    out(
      `${name.padEnd(11)} ${h(backend?.cpuUsPerFrame).padStart(17)} ${h(plugin?.cpuUsPerFrame).padStart(24)} ` +
        `${`${w(backend?.wakeUpsPerFrame)}/${w(plugin?.wakeUpsPerFrame)}`.padStart(15)} ` +
        `${`${h(plugin?.handoffP50Us)}/${h(plugin?.handoffP99Us)}`.padStart(19)} ` +
        `${`${h(plugin?.roundTripUs.p50)}/${h(plugin?.roundTripUs.p99)}`.padStart(26)}  ${plugin?.bytesCopiedPerFrame ?? 'n/a'}`,
    );
  }
  out();
  for (const [mode, a] of Object.entries(result.allocationsPerFrame)) {
    out(
      `allocated per guest frame (1920x1080, ${mode === 'plugin' ? 'back-end + plugin' : 'back-end'}): ` +
        `${a.bytesPerFrame.toFixed(0)} bytes over ${a.frames} frames` +
        (a.gcs ? ` (${a.gcs} GCs ran: an undercount)` : ''),
    );
  }
  if (typeof result.syscallsPerFrame === 'string') {
    out(`syscalls per frame: ${result.syscallsPerFrame}`);
  } else {
    const total = result.syscallsPerFrame.reduce((sum, s) => sum + s.perFrame, 0);
    out(`syscalls per guest frame (1920x1080, back-end + plugin): ${total.toFixed(2)}`);
    for (const s of result.syscallsPerFrame) {
      out(
        `  ${s.name.padEnd(16)} ${s.perFrame.toFixed(2).padStart(6)}${s.errors ? `  (${s.errors} errors)` : ''}  ${s.why ?? ''}`,
      );
    }
  }
  out();
  if (result.eightGuests) {
    const e = result.eightGuests as {
      cpuUsPerFrame: number;
      // null when --sizes left 1920x1080 out: no one-guest figure to compare with
      oneGuestCpuUsPerFrame: number | null;
      ratio: number | null;
      worstHandoffP99Us: number | null;
    };
    out(
      `8 guests at 1920x1080@30: ${e.cpuUsPerFrame.toFixed(0)} µs/frame (one guest ${e.oneGuestCpuUsPerFrame?.toFixed(0) ?? 'n/a'}, ` +
        `ratio ${e.ratio?.toFixed(2) ?? 'n/a'}); worst guest's handoff p99 ${e.worstHandoffP99Us?.toFixed(0) ?? 'n/a'} µs`,
    );
  }
  if (result.wakeFloor) {
    const f = result.wakeFloor;
    const figure = (x: { pacedUs: number; backToBackUs: number }) =>
      `${x.pacedUs.toFixed(0)} µs (${x.backToBackUs.toFixed(0)} back to back)`;
    out(
      `wake-up floor at ${f.fps} Hz, CPU per wake-up of a process that only drains the kick and signals back: ` +
        `C ${f.c ? figure(f.c) : `n/a (${f.cWhy})`}, Node ${figure(f.node)}`,
    );
    for (const [name, r] of Object.entries(result.resolutions)) {
      const above = (m: Measured | undefined) =>
        m ? `${(m.cpuUsPerFrame - f.node.pacedUs).toFixed(0)} µs` : 'n/a';
      out(
        `  guestfb above the Node floor at ${name}: back-end ${above(r.backend as Measured | undefined)}, ` +
          `back-end + plugin ${above(r.plugin as Measured | undefined)}`,
      );
    }
  }
  if (result.longRun) {
    const l = result.longRun;
    out(
      `long run: ${l.frames} frames in ${l.seconds!.toFixed(0)} s (${l.framesPresented} presented): heap used ` +
        `${(l.heapUsedBefore! / 1e6).toFixed(2)} → ${(l.heapUsedAfter! / 1e6).toFixed(2)} MB, fds ${l.fdsBefore} → ${l.fdsAfter}`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});

void median;
