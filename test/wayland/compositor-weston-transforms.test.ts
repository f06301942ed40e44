// Real clients exercising buffer_transform, buffer_scale, wp_viewporter and wp_presentation on
// the example compositor: weston-simple-damage draws the same window whatever transform, scale
// and viewport it renders with (the compositor must undo each exactly), and
// weston-presentation-shm gets presented events with increasing sequence numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { run, useTempRuntimeDir } from './native-helpers.js';
import { until } from '../helpers/wait.js';

const OUTPUT = 'HEADLESS-1';

function start(socket: string): Compositor {
  return createCompositor({
    outputs: [{ name: OUTPUT, width: 640, height: 480, refreshMhz: 60000 }],
    socket,
    log: () => {},
  });
}

const variants = [
  ['--transform=normal'],
  ['--transform=90', '--scale=2', '--use-viewport', '--use-damage-buffer'],
  ['--transform=flipped-270', '--scale=3', '--use-viewport'],
  ['--transform=180', '--scale=2', '--use-damage-buffer'],
  ['--transform=flipped', '--use-viewport'],
];

test('weston-simple-damage looks the same under every transform, scale and viewport', async (t) => {
  const runtime = useTempRuntimeDir();
  const compositor = start('guestfb-damage-0');
  try {
    for (const args of variants) {
      await t.test(args.join(' '), async () => {
        const { child, done } = run('weston-simple-damage', args, {
          ...process.env,
          WAYLAND_DISPLAY: compositor.socketName!,
          XDG_RUNTIME_DIR: runtime.dir,
        });
        await until(() => compositor.scene.windows.length === 1, 'mapped', { child });
        const frames = compositor.stats().frameCallbacksDone;
        await until(() => compositor.stats().frameCallbacksDone >= frames + 10, 'frames', {
          child,
        });
        const window = compositor.scene.windows[0];
        const size = window.surface.size();
        const png = decodePng(compositor.screenshot(OUTPUT));
        child.kill('SIGTERM');
        await done;
        await until(() => compositor.stats().clients === 0, 'disconnect');

        // A 300x200 window: a 10-pixel white frame around a dark field with one moving ball.
        assert.deepEqual(size, { width: 300, height: 200 });
        let frameErrors = 0;
        const inside = new Map<number, number>();
        for (let y = 0; y < 200; y++) {
          for (let x = 0; x < 300; x++) {
            const pixel = png.pixel(window.x + x, window.y + y);
            if (x < 10 || y < 10 || x >= 290 || y >= 190) {
              if (pixel !== 0xffffff) frameErrors++;
            } else {
              inside.set(pixel, (inside.get(pixel) ?? 0) + 1);
            }
          }
        }
        assert.equal(frameErrors, 0, 'the white frame is where the client drew it');
        const [field, fieldCount] = [...inside.entries()].sort((a, b) => b[1] - a[1])[0];
        assert.equal(field, 0x101418, 'the dark field');
        assert.ok(fieldCount > 280 * 180 * 0.9, `field covers ${fieldCount} pixels`);
        assert.ok(inside.size > 1, 'the ball is drawn');
      });
    }
  } finally {
    await compositor.close();
    runtime.remove();
  }
});

test('weston-presentation-shm gets presented feedback with increasing sequence numbers', async () => {
  const runtime = useTempRuntimeDir();
  const compositor = start('guestfb-present-1');
  try {
    const { child, done } = run('weston-presentation-shm', ['-f'], {
      ...process.env,
      WAYLAND_DISPLAY: compositor.socketName!,
      XDG_RUNTIME_DIR: runtime.dir,
    });
    await until(() => compositor.scene.windows.length === 1, 'mapped', { child });
    const frames = compositor.stats().frameCallbacksDone;
    await until(() => compositor.stats().frameCallbacksDone >= frames + 30, 'frames', { child });
    child.kill('SIGINT'); // it exits cleanly on SIGINT, flushing its (pipe-buffered) report
    const result = await done;
    // Lines like "  12: f2c 0 ms, c2p 16 ms, ..., [s___], seq 16" (s: vsync flag).
    const lines = [...result.stdout.matchAll(/^\s*(\d+): .*\[(\w{4})\], seq (\d+)$/gm)];
    assert.ok(lines.length >= 20, `only ${lines.length} presented events:\n${result.stdout}`);
    const sequences = lines.map((m) => Number(m[3]));
    for (let i = 1; i < sequences.length; i++) assert.ok(sequences[i] > sequences[i - 1]);
    assert.ok(
      lines.every((m) => m[2] === 's___'),
      'vsync flag only',
    );
  } finally {
    await compositor.close();
    runtime.remove();
  }
});
