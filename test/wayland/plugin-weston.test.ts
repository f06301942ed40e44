/**
 * guestfb against a compositor nobody here wrote: Debian 12's weston 10, headless with the
 * pixman renderer. It offers no linux-dmabuf, so the plugin takes the wl_shm fallback: a copy
 * for scattered guest pages (counted), or (opt-in) the guest memfd itself when the pages are contiguous
 * (no copy). weston's own screenshooter (enabled by --debug) checks the pixels.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { fd } from '../../native/fd.js';
import { runStandalone, type GuestfbPlugin } from '../../plugin/index.js';
import {
  PatternSource,
  patternPixel,
  solidCursor,
  type PatternLayout,
} from '../../plugin/sources/pattern.js';
import { poll, settleUntil } from '../helpers/wait.js';

const [W, H] = [320, 200];
/** The output is larger than the window: desktop-shell places windows where it likes. */
const [OUTPUT_W, OUTPUT_H] = [640, 480];

function which(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

interface Weston {
  process: ChildProcess;
  runtimeDir: string;
  display: string;
  log: () => string;
}

async function startWeston(): Promise<Weston> {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-weston-'));
  const socket = 'guestfb-weston';
  // No animations (a window fading in would not match the pattern), no panel.
  const config = path.join(runtimeDir, 'weston.ini');
  writeFileSync(
    config,
    '[shell]\nanimation=none\nstartup-animation=none\nfocus-animation=none\n' +
      'close-animation=none\npanel-position=none\nbackground-color=0xff000000\n',
  );
  let output = '';
  const child = spawn(
    'weston',
    [
      '--backend=headless-backend.so',
      '--use-pixman',
      `--width=${OUTPUT_W}`,
      `--height=${OUTPUT_H}`,
      `--socket=${socket}`,
      '--idle-time=0',
      // desktop-shell (the default): on weston 10 headless, kiosk-shell never sent the first
      // frame callback (weston-simple-shm stalls the same way there).
      '--debug',
      `--config=${config}`,
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const display = path.join(runtimeDir, socket);
  // Wait for the socket (weston creates the lock file and socket before it is ready to serve).
  await poll(() => existsSync(display), { intervalMs: 50, child }).catch(() => {
    throw new Error(`weston exited early:\n${output}`);
  });
  return { process: child, runtimeDir, display, log: () => output };
}

async function stopWeston(weston: Weston): Promise<void> {
  if (weston.process.exitCode === null) {
    // 'close' comes after the stdio pipes closed (their fds count against the baseline).
    const exited = new Promise((resolve) => weston.process.once('close', resolve));
    weston.process.kill('SIGTERM');
    await exited;
  }
  rmSync(weston.runtimeDir, { recursive: true, force: true });
}

/** Runs weston-screenshooter against the display and decodes the PNG it writes. */
function screenshot(weston: Weston): PNG {
  const folder = mkdtempSync(path.join(weston.runtimeDir, 'shot-'));
  const result = spawnSync('weston-screenshooter', [], {
    cwd: folder,
    env: { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: 'guestfb-weston' },
    timeout: 120_000,
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, `weston-screenshooter failed: ${result.stderr}`);
  const files = readdirSync(folder).filter((name) => name.endsWith('.png'));
  assert.equal(files.length, 1, `one screenshot in ${files.join(', ')}`);
  return PNG.sync.read(readFileSync(path.join(folder, files[0])));
}

function rgbAt(png: PNG, x: number, y: number): number {
  const i = (y * png.width + x) * 4;
  return (png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2];
}

/** Where the window's top-left pixel is: the first spot whose corner block matches. */
function findWindow(png: PNG, frame: number): [number, number] {
  const expected = (x: number, y: number) => patternPixel(x, y, frame, W, H) & 0xffffff;
  for (let oy = 0; oy + H <= png.height; oy++) {
    for (let ox = 0; ox + W <= png.width; ox++) {
      let matches = true;
      for (let i = 0; i < 16 && matches; i++) {
        const [x, y] = [i % 4, i >> 2];
        matches = rgbAt(png, ox + x * 37, oy + y * 23) === expected(x * 37, y * 23);
      }
      if (matches) return [ox, oy];
    }
  }
  assert.fail('the guest window is not in the screenshot');
}

interface CursorBox {
  x: number;
  y: number;
  size: number;
  rgb: number;
}

/** Pixels of the window that differ from the pattern (or, inside `cursor`, from its colour). */
function countMismatches(png: PNG, frame: number, cursor?: CursorBox): number {
  assert.equal(png.width, OUTPUT_W);
  assert.equal(png.height, OUTPUT_H);
  const [ox, oy] = findWindow(png, frame);
  let mismatches = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const inCursor =
        cursor &&
        x >= cursor.x &&
        x < cursor.x + cursor.size &&
        y >= cursor.y &&
        y < cursor.y + cursor.size;
      const expected = inCursor ? cursor.rgb : patternPixel(x, y, frame, W, H) & 0xffffff;
      if (rgbAt(png, ox + x, oy + y) !== expected) mismatches++;
    }
  }
  return mismatches;
}

async function runAgainstWeston(
  t: TestContext,
  layout: PatternLayout,
  options: { shmOnGuestRam?: boolean } = {},
) {
  const baseline = fd.openFdCount();
  const weston = await startWeston();
  const source = new PatternSource({ width: W, height: H, rate: 0, layout, name: 'screen' });
  const logs: string[] = [];
  let plugin: GuestfbPlugin | null = null;
  try {
    plugin = await runStandalone({
      display: weston.display,
      sources: [{ name: 'weston-guest', source }],
      log: (line) => logs.push(line),
      ...options,
    });
    const running = plugin;
    const window = () => running.presenter?.windows()[0];
    await settleUntil(running, () => running.stats().framesPresented >= 1, 'the first frame');
    assert.ok(window()?.isConfigured, 'xdg_surface configure acked');
    assert.ok((window()?.configureCount ?? 0) >= 1);

    // A new frame drawn into the same guest pages, flushed: no new buffer.
    const bufferBefore = window()?.buffer;
    source.showFrame(5);
    await settleUntil(running, () => running.stats().framesPresented >= 2, 'the second frame');
    await settleUntil(
      running,
      () => !running.presenter!.windows()[0].pacer.waitingForFrame,
      'frame done',
    );
    assert.equal(window()?.buffer, bufferBefore, 'the same wl_buffer');
    const mismatches = countMismatches(screenshot(weston), 5);
    assert.equal(mismatches, 0, `${mismatches} of ${W * H} pixels differ`);

    // weston headless has no wl_seat: the guest cursor goes on a subsurface at its position.
    const cursorView = () => running.presenter!.windows()[0];
    assert.ok(cursorView());
    source.setCursor(100, 50, solidCursor(16, 16, 0xffff00ff, 2, 3));
    await running.settle();
    await settleUntil(
      running,
      () => !running.presenter!.windows()[0].pacer.waitingForFrame,
      'idle',
    );
    const withCursor = countMismatches(screenshot(weston), 5, {
      x: 98,
      y: 47,
      size: 16,
      rgb: 0xff00ff,
    });
    assert.equal(withCursor, 0, `${withCursor} pixels differ with the cursor shown`);

    const stats = running.stats();
    assert.match(stats.fallbackReason ?? '', /udmabuf|zwp_linux_dmabuf_v1/);
    assert.equal(stats.dmabufsLive, 0);
    assert.equal(logs.filter((line) => line.includes('fallback:')).length, 1, 'logged once');
    t.diagnostic(`fallback: ${stats.fallbackReason}`);
    t.diagnostic(`bytes copied: ${stats.bytesCopied}`);
    return { stats, buffer: bufferBefore };
  } finally {
    plugin?.stop();
    source.close();
    await stopWeston(weston);
    assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
  }
}

/** weston 10 is installed by scripts/setup.sh: its absence is a broken setup, not a reason to skip. */
function requireWeston(): void {
  for (const command of ['weston', 'weston-screenshooter']) {
    assert.ok(
      which(command),
      `${command} is not installed: run scripts/setup.sh (Debian package weston)`,
    );
  }
}

test('weston 10: scattered guest pages go through a counted wl_shm copy', async (t) => {
  requireWeston();
  const { stats, buffer } = await runAgainstWeston(t, 'scattered');
  assert.equal(buffer?.path, 'shm-copy');
  // Two full frames: the first attach and the full redraw.
  assert.equal(stats.bytesCopied, 2 * W * H * 4);
  assert.match(stats.fallbackReason ?? '', /copying damaged rects/);
});

test('weston 10: contiguous guest pages are shown from the guest memfd with no copy (opt-in)', async (t) => {
  requireWeston();
  const { stats, buffer } = await runAgainstWeston(t, 'contiguous', { shmOnGuestRam: true });
  assert.equal(buffer?.path, 'shm-direct');
  assert.equal(stats.bytesCopied, 0);
  assert.match(stats.fallbackReason ?? '', /contiguous backing: wl_shm on the guest memfd/);
});
