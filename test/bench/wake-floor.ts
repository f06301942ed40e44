/**
 * The floor under guestfb's CPU per guest frame: what one wake-up costs a process that does
 * nothing but drain an eventfd and signal another, at the guest's frame rate, measured in the
 * same run as guestfb. A frame of guestfb is one such wake-up (the guest's kick) plus its work;
 * between two frames 33 ms apart the machine runs other things, so each wake-up starts on cold
 * caches and costs several times what it costs back to back.
 *
 * Two floors: a C process in epoll (wake-floor.c, built with the system's cc; no process can do
 * less) and a Node process with guestfb's own fd watch (wake-floor-child.ts: libuv, one call into
 * JavaScript). CPU is the kernel's per-thread run time (/proc/PID/task/TID/schedstat, all
 * threads), the same quantity as process.cpuUsage() in the guestfb child.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fd } from '../../native/fd.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
/** The C source stays in the source tree (tsc copies nothing): test/bench/wake-floor.c. */
const cSource = path.resolve(benchDir, '../../../test/bench/wake-floor.c');

export interface WakeFloorFigure {
  /** CPU µs per wake-up at `fps`, paced like the synthetic guest. */
  pacedUs: number;
  /** CPU µs per wake-up back to back (warm caches). */
  backToBackUs: number;
}

export interface WakeFloor {
  fps: number;
  wakeUps: number;
  node: WakeFloorFigure;
  /** null when no C compiler is installed (`cWhy` says so). */
  c: WakeFloorFigure | null;
  cWhy?: string;
}

/** Run time of every thread of `pid`, in µs. */
function threadsCpuUs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // (a thread that ended between the listing and the read)
    }
  }
  return ns / 1000;
}

/** Kicks `command` `wakeUps` times (after a warm-up) at `fps` (0: back to back), CPU per kick. */
async function measureWorker(
  command: string,
  args: string[],
  fps: number,
  wakeUps: number,
): Promise<WakeFloorFigure> {
  const kick = fd.eventfd(0);
  const ack = fd.eventfd(0);
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe', kick, ack] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let acked: (() => void) | null = null;
  let acks = 0;
  const stopWatch = fd.watchReadable(ack, () => {
    acks += fd.eventfdRead(ack);
    acked?.();
  });
  const nextAck = (count: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${path.basename(command)} ${args.join(' ')}: no ack\n${stderr}`)),
        10_000,
      );
      acked = () => {
        if (acks < count) return;
        clearTimeout(timer);
        acked = null;
        resolve();
      };
      acked();
    });
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  try {
    await nextAck(1); // the worker is ready
    const run = async (count: number, rate: number) => {
      for (let i = 0; i < count; i++) {
        const started = performance.now();
        fd.eventfdWrite(kick, 1);
        await nextAck(acks + 1);
        if (rate) await pause(Math.max(0, 1000 / rate - (performance.now() - started)));
      }
    };
    await run(200, 0); // a Node worker's callback optimized, as guestfb's frame path is
    await run(fps, fps);
    let before = threadsCpuUs(child.pid!);
    await run(wakeUps, fps);
    const pacedUs = (threadsCpuUs(child.pid!) - before) / wakeUps;
    before = threadsCpuUs(child.pid!);
    await run(wakeUps, 0);
    const backToBackUs = (threadsCpuUs(child.pid!) - before) / wakeUps;
    return { pacedUs, backToBackUs };
  } finally {
    stopWatch();
    child.kill('SIGKILL');
    await new Promise((resolve) =>
      child.exitCode === null ? child.once('exit', resolve) : resolve(null),
    );
    fd.close(kick);
    fd.close(ack);
  }
}

/** Both floors at `fps`, `wakeUps` wake-ups each; the C one is built into `dir`. */
export async function measureWakeFloor(
  dir: string,
  fps: number,
  wakeUps: number,
): Promise<WakeFloor> {
  const node = await measureWorker(
    process.execPath,
    ['--no-memory-reducer', path.join(benchDir, 'wake-floor-child.js')],
    fps,
    wakeUps,
  );
  const binary = path.join(dir, 'wake-floor');
  const build = spawnSync('cc', ['-O2', '-o', binary, cSource], { encoding: 'utf8' });
  if (build.error || build.status !== 0) {
    return {
      fps,
      wakeUps,
      node,
      c: null,
      cWhy: `cc failed: ${build.error?.message ?? build.stderr.trim()}`,
    };
  }
  return { fps, wakeUps, node, c: await measureWorker(binary, [], fps, wakeUps) };
}
