/**
 * Handoff benchmark: the plugin's CPU cost per frame on the zero-copy path (damage_buffer +
 * commit on an existing dma-buf wl_buffer) against the copying path (the damaged frame copied
 * out of scattered guest pages into a wl_shm buffer + commit), measured in the same run, at
 * 1080p and 4K, full-frame damage.
 *
 * The compositor (examples/compositor) runs in a child process so its rendering is not
 * counted: process.cpuUsage() here covers only the plugin's side (request marshalling, the
 * copy, the event loop waiting for frame callbacks). Each path gets its own window; paths are
 * interleaved over rounds and the median round is reported.
 *
 *   npm run bench              a table
 *   npm run bench -- --json    one JSON object
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UdmabufExporter } from '../../plugin/dmabuf/index.js';
import { DmabufBuffer, ShmCopyBuffer, type PresentedBuffer } from '../../plugin/present/buffers.js';
import { WaylandClient } from '../../plugin/present/connection.js';
import { DRM_FORMAT_MOD_LINEAR } from '../../plugin/common/formats.js';
import { bindGlobals, type PresentGlobals } from '../../plugin/present/globals.js';
import { HeadWindow } from '../../plugin/present/window.js';
import { PatternGuest } from '../../plugin/sources/pattern.js';
import { PluginStats } from '../../plugin/stats.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface PathResult {
  usPerFrame: number;
  bytesCopiedPerFrame: number;
  /** Wall time from the flush to its commit written to the socket, µs (median round's). */
  wallP50Us: number;
  wallP99Us: number;
}

interface ResolutionResult {
  width: number;
  height: number;
  frames: number;
  rounds: number;
  zeroCopy: PathResult;
  copy: PathResult;
  /** copy µs / zero-copy µs */
  ratio: number;
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    rounds: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('Usage: npm run bench [-- --json] [-- --rounds N]\n');
  process.exit(0);
}
const rounds = values.rounds ? Number(values.rounds) : 3;
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
  process.stderr.write('bench: --rounds must be an integer 1..50\n');
  process.exit(2);
}

async function startCompositor(width: number, height: number) {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-bench-'));
  const socket = 'guestfb-bench';
  let output = '';
  const child: ChildProcess = spawn(
    process.execPath,
    [
      path.join(repoRoot, 'dist/examples/compositor/cli.js'),
      '--headless',
      '--socket',
      socket,
      '--output',
      `${width}x${height}@60`,
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const display = path.join(runtimeDir, socket);
  while (!existsSync(display)) {
    if (child.exitCode !== null) throw new Error(`compositor exited:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    display,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
}

/** Commits `frames` full-damage frames on a window showing `buffer`; CPU µs per frame. */
async function measure(
  globals: PresentGlobals,
  client: WaylandClient,
  buffer: PresentedBuffer,
  frames: number,
): Promise<PathResult> {
  const stats = new PluginStats();
  let frameDone: (() => void) | null = null;
  // Every commit asks for a frame callback (this loop waits for each one's done), as every
  // commit did before guests slower than the display went without: figures stay comparable.
  const window = new HeadWindow(
    globals,
    stats,
    'guestfb bench',
    { close: () => undefined, frameDone: () => frameDone?.() },
    { unpacedIntervalMs: Infinity },
  );
  const full = [{ x: 0, y: 0, width: buffer.width, height: buffer.height }];
  const nextFrame = () =>
    new Promise<void>((resolve) => {
      frameDone = resolve;
    });
  try {
    await client.roundtrip(); // configure
    window.show(buffer);
    await nextFrame(); // the frame show() committed: later flushes find no frame pending
    // Warm-up: a few frames.
    for (let i = 0; i < 5; i++) {
      const done = nextFrame();
      window.flush(full);
      client.flush();
      await done;
    }
    const copiedBefore = stats.bytesCopied;
    const walls = new Float64Array(frames);
    const start = process.cpuUsage();
    for (let i = 0; i < frames; i++) {
      const done = nextFrame();
      // The previous frame callback has fired: this flush commits at once, and client.flush()
      // writes the commit to the compositor's socket.
      const flushed = performance.now();
      window.flush(full);
      client.flush();
      walls[i] = (performance.now() - flushed) * 1000;
      await done;
    }
    const used = process.cpuUsage(start);
    walls.sort();
    return {
      usPerFrame: (used.user + used.system) / frames,
      bytesCopiedPerFrame: (stats.bytesCopied - copiedBefore) / frames,
      wallP50Us: walls[Math.ceil(0.5 * frames) - 1]!,
      wallP99Us: walls[Math.ceil(0.99 * frames) - 1]!,
    };
  } finally {
    window.destroy();
    await client.roundtrip();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function benchResolution(
  width: number,
  height: number,
  frames: number,
  exporter: UdmabufExporter | null,
): Promise<ResolutionResult> {
  const compositor = await startCompositor(width, height);
  const client = await WaylandClient.connect(compositor.display);
  const globals = await bindGlobals(client);
  // Zero-copy: with udmabuf, the scattered guest pages as a dma-buf; without, a memfd whose
  // offset 0 is the framebuffer stands in for the dma-buf (the compositor maps either).
  const zeroGuest = new PatternGuest({
    width,
    height,
    layout: exporter ? 'scattered' : 'contiguous',
    firstPage: 0,
  });
  const copyGuest = new PatternGuest({ width, height, layout: 'scattered' });
  const buffers: PresentedBuffer[] = [];
  try {
    if (!globals.dmabuf || !globals.shm)
      throw new Error('the compositor lacks linux-dmabuf or wl_shm');
    const guestBuffer = zeroGuest.buffer();
    const dmabufFd = exporter ? exporter.acquire(1, 0, guestBuffer.ranges).fd : zeroGuest.memfd;
    const zero = DmabufBuffer.create(
      globals.dmabuf,
      dmabufFd,
      guestBuffer,
      DRM_FORMAT_MOD_LINEAR,
      () => undefined,
    );
    buffers.push(zero);
    const copy = ShmCopyBuffer.create(globals.shm, copyGuest.buffer(), 1, 4);
    buffers.push(copy);
    const zeroRuns: PathResult[] = [];
    const copyRuns: PathResult[] = [];
    for (let round = 0; round < rounds; round++) {
      zeroRuns.push(await measure(globals, client, zero, frames));
      copyRuns.push(await measure(globals, client, copy, frames));
    }
    const zeroCopy = {
      usPerFrame: median(zeroRuns.map((r) => r.usPerFrame)),
      bytesCopiedPerFrame: median(zeroRuns.map((r) => r.bytesCopiedPerFrame)),
      wallP50Us: median(zeroRuns.map((r) => r.wallP50Us)),
      wallP99Us: median(zeroRuns.map((r) => r.wallP99Us)),
    };
    const copyResult = {
      usPerFrame: median(copyRuns.map((r) => r.usPerFrame)),
      bytesCopiedPerFrame: median(copyRuns.map((r) => r.bytesCopiedPerFrame)),
      wallP50Us: median(copyRuns.map((r) => r.wallP50Us)),
      wallP99Us: median(copyRuns.map((r) => r.wallP99Us)),
    };
    return {
      width,
      height,
      frames,
      rounds,
      zeroCopy,
      copy: copyResult,
      ratio: copyResult.usPerFrame / zeroCopy.usPerFrame,
    };
  } finally {
    for (const buffer of buffers) buffer.destroy();
    exporter?.release(1);
    globals.destroy();
    await client.roundtrip().catch(() => undefined);
    client.disconnect();
    zeroGuest.close();
    copyGuest.close();
    await compositor.stop();
  }
}

async function main(): Promise<void> {
  let exporter: UdmabufExporter | null = null;
  let dmabufSource: string;
  try {
    exporter = UdmabufExporter.open();
    dmabufSource = 'udmabuf over scattered guest pages';
  } catch (error) {
    dmabufSource = `memfd stand-in for the dma-buf (${(error as Error).message})`;
  }
  const results: Record<string, ResolutionResult> = {};
  try {
    for (const [width, height, frames] of [
      [1280, 800, 120],
      [1920, 1080, 120],
      [3840, 2160, 120],
    ]) {
      if (!values.json) process.stderr.write(`bench: ${width}x${height}...\n`);
      results[`${width}x${height}`] = await benchResolution(width, height, frames, exporter);
    }
  } finally {
    exporter?.dispose();
  }
  const note =
    `zero-copy path: ${dmabufSource}; compositor in a child process, so only the plugin's ` +
    `CPU time (process.cpuUsage) is counted; full-frame damage; median of ${rounds} interleaved rounds`;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ note, resolutions: results })}\n`);
    return;
  }
  process.stdout.write(`${note}\n\n`);
  process.stdout.write(
    'resolution   zero-copy µs/frame  copy µs/frame  ratio  zero-copy wall p50/p99 µs  bytes copied/frame (zero-copy, copy)\n',
  );
  for (const [name, r] of Object.entries(results)) {
    process.stdout.write(
      `${name.padEnd(12)} ${r.zeroCopy.usPerFrame.toFixed(0).padStart(18)} ${r.copy.usPerFrame
        .toFixed(0)
        .padStart(
          14,
        )} ${r.ratio.toFixed(1).padStart(6)} ${`${r.zeroCopy.wallP50Us.toFixed(0)}/${r.zeroCopy.wallP99Us.toFixed(0)}`.padStart(26)}  ${r.zeroCopy.bytesCopiedPerFrame}, ${r.copy.bytesCopiedPerFrame}\n`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
