// The example compositor against Debian's own clients (nobody here wrote them): weston-simple-shm
// shows its exact pattern at the output's frame rate, wayland-info lists linux-dmabuf v4 with its
// default feedback, and a client killed mid-frame leaves no window and no fd behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { run, useTempRuntimeDir } from './native-helpers.js';
import { until } from '../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';
const BACKGROUND = 0x102030;
const REFRESH_HZ = 60;

function start(socket: string): Compositor {
  return createCompositor({
    outputs: [{ name: OUTPUT, width: 640, height: 480, refreshMhz: REFRESH_HZ * 1000 }],
    socket,
    background: BACKGROUND,
    log: () => {},
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What weston-simple-shm (weston 10) draws into its 250x250 XRGB buffer for a frame time whose
 * `time / 16` is `t16`: a 20-pixel white margin (the buffer starts as 0xff bytes), then rings
 * around the centre, horizontal bands, and columns in the corners.
 */
function simpleShmPixel(x: number, y: number, t16: number): number {
  const size = 250;
  const padding = 20;
  if (x < padding || y < padding || x >= size - padding || y >= size - padding) return 0xffffff;
  const half = padding + (size - 2 * padding) / 2;
  const outer = (half - 8) ** 2;
  const inner = (half - 8 - 32) ** 2;
  const r2 = (x - half) ** 2 + (y - half) ** 2;
  let v: number;
  if (r2 < inner) v = Math.floor(r2 / 32) + Math.floor(t16 / 4);
  else if (r2 < outer) v = y + Math.floor(t16 / 2);
  else v = x + t16;
  return Math.imul(v, 0x0080401) & 0xffffff;
}

/** Recovers time/16 from a corner pixel (x, y): v = (x + t16) * 0x80401 mod 2^24, 0x80401 odd. */
function recoverT16(value: number, x: number): number {
  const modulus = 1n << 24n;
  let inverse = 1n;
  for (let i = 0; i < 5; i++) inverse = (inverse * (2n - 0x80401n * inverse)) % modulus;
  inverse = ((inverse % modulus) + modulus) % modulus;
  return Number((BigInt(value) * inverse) % modulus) - x;
}

test('weston-simple-shm: its exact pattern on screen, frame callbacks at the output rate', async (t) => {
  const runtime = useTempRuntimeDir();
  const compositor = start('guestfb-shm-0');
  try {
    const { child, done } = run('weston-simple-shm', [], {
      ...process.env,
      WAYLAND_DISPLAY: compositor.socketName!,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    await until(() => compositor.scene.windows.length === 1, 'window mapped', { child });
    const firstFrames = compositor.stats().frameCallbacksDone;
    const firstTicks = compositor.stats().ticks[OUTPUT];
    const started = process.hrtime.bigint();
    await sleep(2000);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const frames = compositor.stats().frameCallbacksDone - firstFrames;
    const ticks = compositor.stats().ticks[OUTPUT] - firstTicks;

    const window = compositor.scene.windows[0];
    const png = decodePng(compositor.screenshot(OUTPUT));
    child.kill('SIGTERM');
    await done;
    t.diagnostic(`${frames} frame callbacks, ${ticks} ticks in ${seconds.toFixed(2)} s`);

    // Paced by the compositor: never more than one frame per tick, and at least half the
    // nominal rate over the run.
    assert.ok(frames <= ticks + 1, `${frames} frames in ${ticks} ticks`);
    assert.ok(
      frames >= 0.5 * REFRESH_HZ * seconds,
      `${frames} frame callbacks in ${seconds.toFixed(2)} s (nominal ${REFRESH_HZ} Hz)`,
    );

    const t16 = recoverT16(png.pixel(window.x + 20, window.y + 20), 20);
    let differing = 0;
    for (let y = 0; y < 250; y++) {
      for (let x = 0; x < 250; x++) {
        if (png.pixel(window.x + x, window.y + y) !== simpleShmPixel(x, y, t16)) differing++;
      }
    }
    assert.equal(differing, 0, `${differing} of 62500 pixels differ from simple-shm's pattern`);
    assert.equal(png.pixel(window.x + 250, window.y + 10), BACKGROUND, 'right of the window');
    assert.equal(png.pixel(window.x - 1, window.y - 1), BACKGROUND, 'above-left of the window');
  } finally {
    await compositor.close();
    runtime.remove();
  }
});

test('wayland-info lists linux-dmabuf v4 with the default feedback formats and modifiers', async () => {
  const runtime = useTempRuntimeDir();
  const compositor = start('guestfb-info-1');
  try {
    const { done } = run('wayland-info', [], {
      ...process.env,
      WAYLAND_DISPLAY: compositor.socketName!,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    const result = await done;
    assert.equal(result.code, 0, result.stderr);
    const section =
      /interface: 'zwp_linux_dmabuf_v1',\s+version:\s+4,[^\n]*\n((?:\t[^\n]*\n)+)/.exec(
        result.stdout,
      );
    assert.ok(section, result.stdout);
    const body = section[1];
    assert.match(body, /main device: 0x[0-9A-F]+/);
    assert.match(body, /\ttranche\n\t\ttarget device: 0x[0-9A-F]+/);
    const pairs = [...body.matchAll(/0x([0-9a-f]{8}) = '(\w+)'; 0x([0-9a-f]{16}) = (\w+)/g)].map(
      (m) => `${m[2]} ${m[4]}`,
    );
    const expected = ['XR24', 'AR24', 'XB24', 'AB24', 'RG16', 'NV12'].flatMap((f) => [
      `${f} LINEAR`,
      `${f} INVALID`,
    ]);
    assert.deepEqual(pairs, expected);
    for (const name of ['wl_compositor', 'wl_shm', 'xdg_wm_base', 'wl_seat', 'wp_presentation']) {
      assert.match(result.stdout, new RegExp(`interface: '${name}'`));
    }
    assert.match(result.stdout, /presentation clock id: 1 \(CLOCK_MONOTONIC\)/);
    assert.match(result.stdout, /width: 640 px, height: 480 px, refresh: 60\.000 Hz/);
  } finally {
    await compositor.close();
    runtime.remove();
  }
});

test('a client killed mid-frame: compositor keeps running, its window is gone, no fd leaks', async () => {
  const runtime = useTempRuntimeDir();
  const compositor = start('guestfb-kill-2');
  try {
    await sleep(50); // a few ticks, so the baseline is the steady state
    const baseline = fd.openFdCount();
    const { child, done } = run('weston-simple-shm', [], {
      ...process.env,
      WAYLAND_DISPLAY: compositor.socketName!,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    await until(() => compositor.scene.windows.length === 1, 'window mapped', { child });
    const window = compositor.scene.windows[0];
    const mappedFrames = compositor.stats().frameCallbacksDone;
    await until(() => compositor.stats().frameCallbacksDone >= mappedFrames + 5, 'frames', {
      child,
    });
    child.kill('SIGKILL');
    const result = await done;
    assert.equal(result.signal, 'SIGKILL');
    await until(() => compositor.stats().clients === 0, 'client disconnect');

    assert.equal(compositor.scene.windows.length, 0);
    assert.equal(compositor.scene.surfaces.size, 0, 'every surface of the client is gone');
    const ticks = compositor.stats().ticks[OUTPUT];
    await until(() => compositor.stats().ticks[OUTPUT] >= ticks + 2, 'compositor still ticking');
    const png = decodePng(compositor.screenshot(OUTPUT));
    for (const [x, y] of [
      [10, 10],
      [125, 125],
      [249, 249],
    ]) {
      assert.equal(png.pixel(window.x + x, window.y + y), BACKGROUND, `background at ${x},${y}`);
    }
    assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
  } finally {
    await compositor.close();
    runtime.remove();
  }
});
