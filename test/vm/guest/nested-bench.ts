// Runs inside the kernel-tier VM (real /dev/udmabuf), started by test/bench/nested.ts: guestfb's
// CPU per guest frame on the headline path with a real guest. QEMU 10 in the VM boots the test
// guest with vhost-user-gpu-pci on guestfb's back-end; guestfb runs standalone (this process:
// back-end + plugin, nothing else) and presents to weston 14 (GL renderer, its own process) as
// udmabuf dma-bufs. The guest's drawpattern draws full frames at 30 Hz.
//
// Measured: this process's CPU time (process.cpuUsage) between drawpattern's "frame 0 shown" and
// its "N frames in" console lines, divided by the guest's RESOURCE_FLUSHes in between; and the
// boot timeline (QEMU start -> the guest's /init -> its DRM device). Everything runs under TCG
// inside TCG, so the absolute figures are far slower than a host's.
//
// Prints one line `guestfb-nested-bench <json>` on stdout; exits 1 when the frames did not take
// the dma-buf path (the figures would not be the headline path's).
//   node dist/test/vm/guest/nested-bench.js [--frames N] [--size WxH]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  bootGuest,
  ensureGuest,
  ensureQemu,
  type QemuProcess,
} from '../../../examples/qemu/qemu.js';
import { runStandalone, type GuestfbPlugin } from '../../../plugin/index.js';
import {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
} from '../../../plugin/sources/virtio-gpu/index.js';
import { cachedWeston14 } from '../weston14.js';
import { startWeston, type WestonProcess } from './weston14-session.js';

const { values } = parseArgs({
  options: { frames: { type: 'string' }, size: { type: 'string' } },
});
const frames = Number(values.frames ?? 150);
const [width, height] = (values.size ?? '640x480').split('x').map(Number) as [number, number];
if (!Number.isInteger(frames) || frames < 10) throw new Error('--frames wants an integer >= 10');
if (!(width > 0 && height > 0)) throw new Error('--size wants WxH');
const WAIT_MS = 20 * 60_000;

const progress = (message: string) => process.stderr.write(`nested bench: ${message}\n`);
const cache = process.env.GUESTFB_WESTON14_CACHE;
if (!cache) throw new Error('GUESTFB_WESTON14_CACHE must name the weston14 cache');

let qemu: QemuProcess | undefined;
let backend: VhostUserGpuBackend | undefined;
let standalone: GuestfbPlugin | undefined;
let weston: WestonProcess | undefined;
const workDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-nested-bench-'));
try {
  const tier = await ensureQemu(progress);
  const guest = await ensureGuest(progress);
  weston = await startWeston(cachedWeston14(cache), { width, height });
  const logs: string[] = [];
  backend = createVhostUserGpuBackend({
    socketPath: path.join(workDir, 'gpu.sock'),
    role: 'listen',
    width,
    height,
    name: 'vm',
    log: (level, message) => logs.push(`gpu ${level}: ${message}`),
  });
  let flushes = 0;
  backend.on('flush', () => flushes++);
  standalone = await runStandalone({
    display: weston.socketPath,
    sources: [{ name: 'vm', source: backend }],
    log: (line) => logs.push(line),
  });

  // CPU and counters at the guest's first and last frame, taken when its console lines arrive.
  interface Mark {
    at: number;
    cpu: NodeJS.CpuUsage;
    flushes: number;
    presented: number;
  }
  const marks = new Map<string, Mark>();
  const mark = (name: string) =>
    marks.set(name, {
      at: Date.now(),
      cpu: process.cpuUsage(),
      flushes,
      presented: standalone!.stats().framesPresented,
    });
  const started = Date.now();
  qemu = bootGuest(tier, guest, {
    gpuSocket: path.join(workDir, 'gpu.sock'),
    width,
    height,
    fbcon: false,
    memoryMb: 256,
    fastBoot: true,
    guestCommand: `drawpattern --mode ${width}x${height} --fps 30 --frames ${frames} --hold`,
    timeoutMs: WAIT_MS,
    onConsole: (line) => {
      if (/drawpattern: frame 0 shown/.test(line)) mark('first');
      if (/drawpattern: \d+ frames in/.test(line)) mark('last');
      process.stderr.write(`nested guest: ${line}\n`);
    },
  });
  const init = await qemu.waitForConsole(/guestfb-init: up at ([\d.]+) s/);
  const initMs = Date.now() - started;
  const drm = await qemu.waitForConsole(/guestfb-init: \/dev\/dri\/card0 ready at ([\d.]+) s/);
  const drmMs = Date.now() - started;
  const done = await qemu.waitForConsole(/drawpattern: (\d+) frames in ([\d.]+) s/);
  await qemu.waitForConsole(/drawpattern: holding the last frame/);
  const first = marks.get('first');
  const last = marks.get('last');
  if (!first || !last)
    throw new Error('the console lines of the first and last frame were not seen');
  const window = standalone.presenter!.windows()[0];
  const stats = standalone.stats();
  const gpuStats = backend.stats();
  const guestFrames = Number(done[1]);
  const cpuUs = last.cpu.user - first.cpu.user + (last.cpu.system - first.cpu.system);
  const flushed = last.flushes - first.flushes;
  const result = {
    note:
      `TCG inside TCG: QEMU 10 in the kernel-tier VM, guest ${width}x${height} drawpattern at 30 Hz ` +
      `(full damage), guestfb standalone -> weston 14 (GL, llvmpipe) in the VM; guestfb process CPU`,
    resolution: `${width}x${height}`,
    path: window?.buffer?.path ?? null,
    guestFrames,
    guestSeconds: Number(done[2]),
    flushes: flushed,
    framesPresented: last.presented - first.presented,
    cpuUsPerFlush: flushed > 0 ? cpuUs / flushed : null,
    cpuUsPerPresented:
      last.presented > first.presented ? cpuUs / (last.presented - first.presented) : null,
    bytesCopied: stats.bytesCopied + gpuStats.bytesCopied,
    fallbackReason: stats.fallbackReason,
    handoffP50Us: stats.handoffP50Us,
    handoffP99Us: stats.handoffP99Us,
    boot: {
      qemuToInitS: initMs / 1000,
      qemuToDrmS: drmMs / 1000,
      guestUptimeAtInitS: Number(init[1]),
      guestUptimeAtDrmS: Number(drm[1]),
    },
  };
  process.stdout.write(`guestfb-nested-bench ${JSON.stringify(result)}\n`);
  if (result.path !== 'dmabuf' || result.bytesCopied !== 0) {
    process.stderr.write(`nested bench: not the dma-buf path:\n${logs.slice(-20).join('\n')}\n`);
    process.exitCode = 1;
  }
} finally {
  qemu?.kill('SIGKILL');
  await qemu?.exited.catch(() => undefined);
  standalone?.stop();
  backend?.close();
  await weston?.stop();
  rmSync(workDir, { recursive: true, force: true });
}
