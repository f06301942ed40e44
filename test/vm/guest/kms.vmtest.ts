// Runs INSIDE the kernel-tier VM with vkms loaded, started by test/vm/kms.test.ts: the example
// compositor drives vkms through its KMS backend. The guestfb plugin's pattern source (scattered
// memfd pages -> udmabuf -> linux-dmabuf) is scanned out directly on the primary plane; surfaces
// that do not fit are composed in software. Every frame is checked through vkms's writeback
// connector, which the compositor drives as its output: vkms's Virtual and Writeback encoders are
// not clones, so one CRTC shows one of them, and only the writeback connector returns pixels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fd } from '../../../native/fd.js';
import { DrmDevice } from '../../../native/drm.js';
import { createCompositor, type Compositor } from '../../../examples/compositor/index.js';
import { describeKmsState, saveKmsState } from '../../../examples/compositor/drm/index.js';
import { decodePng } from '../../../examples/compositor/render/screenshot.js';
import { PresentationKind } from '../../../examples/compositor/core/scene.js';
import type { PresentedInfo } from '../../../examples/compositor/core/surface.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../../plugin/index.js';
import { PatternSource, patternPixel, solidCursor } from '../../../plugin/sources/pattern.js';
import { settleUntil, until } from '../../helpers/wait.js';

const [WIDTH, HEIGHT] = [640, 480];

/** Pixels of a capture (XRGB8888, tightly packed) that differ from `expected(x, y)` (RGB). */
function countDiffering(
  capture: Uint8Array,
  expected: (x: number, y: number) => number,
): { differing: number; first: string } {
  const view = new DataView(capture.buffer, capture.byteOffset, capture.byteLength);
  let differing = 0;
  let first = '';
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const got = view.getUint32((y * WIDTH + x) * 4, true) & 0xffffff;
      const want = expected(x, y) & 0xffffff;
      if (got !== want) {
        if (differing === 0)
          first = `(${x},${y}) got ${got.toString(16)} want ${want.toString(16)}`;
        differing++;
      }
    }
  }
  return { differing, first };
}

function runClient(
  command: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

interface Session {
  compositor: Compositor;
  plugin: GuestfbPlugin;
  source: PatternSource;
  logs: string[];
  drmStats: () => NonNullable<ReturnType<Compositor['stats']>['drm']>;
  presented: (count: number) => Promise<void>;
}

/** A compositor on vkms's writeback connector with the plugin showing one pattern source. */
async function withSession(
  device: DrmDevice,
  guest: { width: number; height: number },
  body: (session: Session) => Promise<void>,
): Promise<void> {
  const logs: string[] = [];
  const compositor = createCompositor({
    outputs: [],
    socket: 'guestfb-kms-test',
    drm: {
      device,
      connector: 'Writeback',
      mode: { width: WIDTH, height: HEIGHT },
      debugFrames: true,
    },
    log: (line) => logs.push(line),
  });
  const source = new PatternSource({ rate: 0, layout: 'scattered', ...guest });
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'vm-guest', source }],
    log: (line) => logs.push(`plugin: ${line}`),
  });
  try {
    assert.equal(await compositor.use(plugin), true, logs.join('\n'));
    const presented = async (count: number) => {
      await settleUntil(plugin, () => plugin.stats().framesPresented >= count, `frame ${count}`);
      const window = plugin.presenter!.windows()[0]!;
      await settleUntil(plugin, () => !window.pacer.waitingForFrame, 'the frame callback');
    };
    await body({
      compositor,
      plugin,
      source,
      logs,
      drmStats: () => compositor.stats().drm!,
      presented,
    });
  } catch (error) {
    process.stderr.write(`compositor log:\n${logs.slice(-60).join('\n')}\n`);
    throw error;
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
  }
}

/** Captures a frame that shows everything committed so far (the next flip). */
async function captureNow(compositor: Compositor): Promise<Uint8Array> {
  return compositor.drm!.capture();
}

test('vkms: direct scanout of the guest dma-buf, composition fallbacks, state restored', async (t) => {
  const baseline = fd.openFdCount();
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-kms-'));
  process.env.XDG_RUNTIME_DIR = runtimeDir;
  const device = DrmDevice.openByDriver('vkms');
  assert.ok(device, 'vkms has a card node');
  try {
    device.enableAtomic(true);
    const before = describeKmsState(saveKmsState(device));
    const cardRdev = statSync(`/proc/self/fd/${device.fd}`, { bigint: true }).rdev;

    await t.test('a fullscreen guest buffer goes straight to the primary plane', async () => {
      await withSession(device, { width: WIDTH, height: HEIGHT }, async (s) => {
        await s.presented(1);
        assert.equal(s.plugin.presenter!.windows()[0]!.buffer?.path, 'dmabuf', s.logs.join('\n'));
        await until(() => s.drmStats().directScanoutFrames > 0, 'a direct scanout frame');
        const composedBefore = s.drmStats().composedFrames;
        const directBefore = s.drmStats().directScanoutFrames;

        s.source.showFrame(7);
        await s.presented(2);
        const capture = await captureNow(s.compositor);
        const { differing, first } = countDiffering(capture, (x, y) =>
          patternPixel(x, y, 7, WIDTH, HEIGHT),
        );
        t.diagnostic(`direct: ${differing} of ${WIDTH * HEIGHT} pixels differ ${first}`);
        assert.equal(differing, 0, first);
        const stats = s.drmStats();
        t.diagnostic(`stats after the direct frames: ${JSON.stringify(stats)}`);
        assert.equal(stats.composedFrames, composedBefore, 'no compose pass');
        assert.ok(stats.directScanoutFrames > directBefore);
        assert.equal(stats.lastPath, 'direct');
        assert.equal(stats.framebuffers, 1, 'one cached framebuffer for the one wl_buffer');
        assert.ok(
          s.logs.some((line) => /frame \d+: direct scanout of fb \d+/.test(line)),
          'a per-frame debug line names the path',
        );

        // linux-dmabuf feedback names vkms's card as main device; wayland-info shows it.
        const info = await runClient('wayland-info', {
          ...process.env,
          WAYLAND_DISPLAY: 'guestfb-kms-test',
          XDG_RUNTIME_DIR: runtimeDir,
        });
        assert.equal(info.code, 0, info.out);
        const section = /interface: 'zwp_linux_dmabuf_v1'[\s\S]*?(?=\ninterface: |$)/.exec(
          info.out,
        );
        assert.ok(section, info.out);
        t.diagnostic(
          section[0]
            .split('\n')
            .filter((line) => /device|tranche|flags/.test(line))
            .join(' | '),
        );
        const mainDevice = /main device: 0x([0-9A-Fa-f]+)/.exec(section[0]);
        assert.ok(mainDevice, section[0]);
        assert.equal(BigInt(`0x${mainDevice[1]}`), cardRdev, 'main device is the vkms card');
        // Two tranches: scanout and render (the order on the wire is checked by the unit test;
        // wayland-info 1.1 prints tranches in reverse arrival order).
        assert.match(section[0], /flags: scanout/);
        assert.match(section[0], /flags: none/);

        // Presentation feedback and frame callbacks follow the flip: a commit with both (made
        // compositor-side, the plugin is idle) is presented by the next flip, zero-copy.
        const guestSurface = s.compositor.scene.windows[0]!.surface;
        const frameDone = new Promise<number>((resolve) => guestSurface.frame({ done: resolve }));
        const presentedInfo = await new Promise<PresentedInfo>((resolve, reject) => {
          guestSurface.presentationFeedback({
            presented: resolve,
            discarded: () => reject(new Error('feedback discarded')),
          });
          guestSurface.commit();
        });
        t.diagnostic(
          `presented: flags ${presentedInfo.flags} seq ${presentedInfo.sequence} at ${presentedInfo.timeNs} ns`,
        );
        assert.equal(
          presentedInfo.flags,
          PresentationKind.VSYNC |
            PresentationKind.HW_CLOCK |
            PresentationKind.HW_COMPLETION |
            PresentationKind.ZERO_COPY,
        );
        assert.equal(presentedInfo.outputName, 'Writeback-1');
        assert.ok(presentedInfo.sequence > 0n && presentedInfo.timeNs > 0n);
        assert.equal(
          await frameDone,
          Number((presentedInfo.timeNs / 1_000_000n) & 0xffffffffn),
          'the frame callback carries the flip time',
        );

        // The guest's cursor (a subsurface with a wl_shm buffer) rides on the cursor plane; the
        // guest buffer stays on the primary plane.
        s.source.setCursor(100, 80, solidCursor(16, 16, 0xffff0000));
        await until(() => s.drmStats().cursorPlaneFrames > 0, 'a frame with the cursor plane');
        const withCursor = await captureNow(s.compositor);
        const cursorStats = s.drmStats();
        t.diagnostic(`with the cursor: ${JSON.stringify(cursorStats)}`);
        assert.equal(cursorStats.composedFrames, composedBefore, 'still no compose pass');
        assert.equal(cursorStats.lastPath, 'direct');
        const composedCursor = decodePng(
          s.compositor.screenshot(s.compositor.scene.outputs[0]!.name),
        );
        const cursorDiff = countDiffering(withCursor, (x, y) => composedCursor.pixel(x, y));
        t.diagnostic(
          `cursor plane vs renderer: ${cursorDiff.differing} differ ${cursorDiff.first}`,
        );
        assert.equal(cursorDiff.differing, 0, cursorDiff.first);
        assert.equal(composedCursor.pixel(108, 88), 0xff0000, 'the cursor is in the picture');
        s.source.setCursor(100, 80, null);
        await until(
          () => s.compositor.scene.layers().length === 1 && s.drmStats().lastPath === 'direct',
          'the cursor gone',
        );

        // A plane that cannot scale: the compositor stretches the same buffer to the output
        // with a viewport; the TEST_ONLY commit fails and the frame is composed.
        const surface = s.compositor.scene.windows[0]!.surface;
        surface.setViewportSource({ x: 0, y: 0, width: WIDTH / 2, height: HEIGHT / 2 });
        surface.setViewportDestination({ width: WIDTH, height: HEIGHT });
        surface.commit();
        const scaled = await captureNow(s.compositor);
        const afterScale = s.drmStats();
        t.diagnostic(`after the scaled commit: ${JSON.stringify(afterScale)}`);
        assert.ok(afterScale.planeTestFailures >= 1, 'the kernel refused the scaled plane');
        assert.equal(afterScale.lastPath, 'composed');
        assert.match(afterScale.lastComposeReason ?? '', /plane test refused/);
        const expected = decodePng(s.compositor.screenshot(s.compositor.scene.outputs[0]!.name));
        const scaledDiff = countDiffering(scaled, (x, y) => expected.pixel(x, y));
        t.diagnostic(`scaled: ${scaledDiff.differing} pixels differ ${scaledDiff.first}`);
        assert.equal(scaledDiff.differing, 0, scaledDiff.first);
        // And the software renderer's picture is the stretched pattern.
        assert.equal(
          expected.pixel(101, 57),
          patternPixel(50, 28, 7, WIDTH, HEIGHT) & 0xffffff,
          'nearest sampling of the upper-left quarter',
        );

        // The guest's wl_buffer goes away: its framebuffer is removed (RmFB, GEM close) once
        // no flip uses it.
        s.plugin.stop();
        await until(() => s.drmStats().framebuffers === 0, 'the framebuffer removed');
      });
    });

    await t.test('a smaller window is composed, pixel-exact against the renderer', async () => {
      const guest = { width: 320, height: 240 };
      await withSession(device, guest, async (s) => {
        await s.presented(1);
        const window = s.compositor.scene.windows[0]!;
        const capture = await captureNow(s.compositor);
        const stats = s.drmStats();
        t.diagnostic(`small window at ${window.x},${window.y}: ${JSON.stringify(stats)}`);
        assert.equal(stats.lastPath, 'composed');
        assert.match(stats.lastComposeReason ?? '', /does not cover the output/);
        assert.equal(stats.directScanoutFrames, 0);
        const expected = decodePng(s.compositor.screenshot(s.compositor.scene.outputs[0]!.name));
        const { differing, first } = countDiffering(capture, (x, y) => expected.pixel(x, y));
        assert.equal(differing, 0, first);
        // The renderer's picture holds the guest's pattern at the window's place.
        for (const [x, y] of [
          [0, 0],
          [319, 239],
          [160, 100],
        ] as const) {
          assert.equal(
            expected.pixel(window.x + x, window.y + y),
            patternPixel(x, y, 0, guest.width, guest.height) & 0xffffff,
          );
        }
      });
    });

    await t.test('the Virtual connector (the display) flips at its refresh', async () => {
      const logs: string[] = [];
      const compositor = createCompositor({
        outputs: [],
        socket: false,
        drm: { device },
        log: (line) => logs.push(line),
      });
      try {
        const output = compositor.scene.outputs[0]!;
        assert.equal(output.name, 'Virtual-1');
        // Damage makes frames (an idle output does not flip); each one is composed and flipped.
        await until(() => {
          compositor.scene.damageEverything();
          return (compositor.stats().drm?.flips ?? 0) >= 3;
        }, 'three flips');
        assert.ok((compositor.stats().drm?.composedFrames ?? 0) >= 3);
        t.diagnostic(`Virtual-1: ${JSON.stringify(compositor.stats().drm)}`);
        assert.ok(output.sequence > 0n, 'the presentation sequence follows the vblank counter');
      } finally {
        await compositor.close();
      }
    });

    const after = describeKmsState(saveKmsState(device));
    assert.deepEqual(after, before, 'KMS state as found');
    t.diagnostic(`restored ${Object.keys(after).length} properties`);
  } finally {
    device.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('guestfb-compositor --drm vkms: frame paths logged, feedback on the card, restored on SIGTERM', async (t) => {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-kms-cli-'));
  const probe = DrmDevice.openByDriver('vkms');
  assert.ok(probe);
  probe.enableAtomic(true);
  const before = describeKmsState(saveKmsState(probe));
  const cardRdev = statSync(`/proc/self/fd/${probe.fd}`, { bigint: true }).rdev;
  probe.close(); // the compositor must be DRM master
  const cli = fileURLToPath(new URL('../../../examples/compositor/cli.js', import.meta.url));
  const child = spawn(
    process.execPath,
    [cli, '--drm', 'vkms', '--drm-mode', '800x600', '--drm-debug', '--socket', 'guestfb-kms-cli'],
    { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    await until(() => stdout.includes('listening') || child.exitCode !== null, 'the CLI');
    assert.match(stdout, /listening on guestfb-kms-cli \(Virtual-1 800x600@60(\.\d+)?Hz\)/, stderr);
    const info = await runClient('wayland-info', {
      ...process.env,
      WAYLAND_DISPLAY: 'guestfb-kms-cli',
      XDG_RUNTIME_DIR: runtimeDir,
    });
    assert.equal(info.code, 0, info.out);
    const mainDevice = /main device: 0x([0-9A-Fa-f]+)/.exec(info.out);
    assert.ok(mainDevice, info.out);
    assert.equal(BigInt(`0x${mainDevice[1]}`), cardRdev);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
  t.diagnostic(
    stderr
      .split('\n')
      .filter((line) => line.includes('drm:'))
      .slice(0, 4)
      .join(' | '),
  );
  assert.match(stderr, /drm: frame 1: composed into fb \d+ \(no surface on the output\)/);
  assert.match(stderr, /drm: KMS state restored/);
  const probeAfter = DrmDevice.openByDriver('vkms');
  assert.ok(probeAfter);
  try {
    probeAfter.enableAtomic(true);
    assert.deepEqual(describeKmsState(saveKmsState(probeAfter)), before);
  } finally {
    probeAfter.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
});
