/**
 * guestfb's CPU per guest frame on the headline path with a real guest: the udmabuf dma-buf path,
 * which needs /dev/udmabuf, so it runs where the nested test runs (test/vm/nested-qemu.test.ts):
 * in the kernel-tier VM, QEMU 10 boots the test guest with guestfb as its vhost-user-gpu
 * back-end, and guestfb presents to weston 14 (GL). test/vm/guest/nested-bench.ts does the work
 * in the VM; this file prepares the cache on the host (QEMU 10, the guest, weston 14) and boots
 * the VM. TCG runs inside TCG there: the figures are slow in absolute terms and only comparable
 * with each other, not with the host's.
 *
 *   npm run build && node dist/test/bench/nested.js [--json] [--frames N] [--size WxH]
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensureGuest, ensureQemu } from '../../examples/qemu/qemu.js';
import { runInVm } from '../vm/harness.js';
import { ensureWeston14 } from '../vm/weston14.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    frames: { type: 'string' },
    size: { type: 'string' },
  },
});
const progress = (message: string) => process.stderr.write(`nested bench: ${message}\n`);
await ensureQemu(progress);
await ensureGuest(progress);
const weston = await ensureWeston14(progress);
const cacheHome = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
const args = [
  ...(values.frames ? ['--frames', values.frames] : []),
  ...(values.size ? ['--size', values.size] : []),
];
const result = await runInVm({
  command: [process.execPath, 'dist/test/vm/guest/nested-bench.js', ...args],
  memoryMb: 3072,
  env: { XDG_CACHE_HOME: cacheHome, GUESTFB_WESTON14_CACHE: weston.cacheDir },
  timeoutMs: 25 * 60_000,
  onOutput: (chunk, stream) => {
    if (stream === 'stderr') process.stderr.write(chunk);
  },
});
const line = result.stdout.split('\n').find((l) => l.startsWith('guestfb-nested-bench '));
if (result.timedOut || result.status !== 0 || !line) {
  process.stderr.write(
    `nested bench: failed in the VM (status ${result.status}${result.timedOut ? ', timed out' : ''})\n` +
      `${result.stdout.slice(-2000)}\n`,
  );
  process.exit(1);
}
const figures = JSON.parse(line.slice('guestfb-nested-bench '.length)) as {
  note: string;
  resolution: string;
  path: string;
  cpuUsPerFlush: number | null;
  cpuUsPerPresented: number | null;
  flushes: number;
  framesPresented: number;
  bytesCopied: number;
  boot: { qemuToInitS: number; qemuToDrmS: number };
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} else {
  const us = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(0)} µs`);
  process.stdout.write(
    `${figures.note}\n` +
      `${figures.resolution}: ${us(figures.cpuUsPerFlush)} per guest frame (${figures.flushes} flushes), ` +
      `${us(figures.cpuUsPerPresented)} per presented frame (${figures.framesPresented}), ` +
      `path ${figures.path}, ${figures.bytesCopied} bytes copied; boot: QEMU start -> /init ` +
      `${figures.boot.qemuToInitS.toFixed(1)} s, -> DRM ${figures.boot.qemuToDrmS.toFixed(1)} s\n`,
  );
}
