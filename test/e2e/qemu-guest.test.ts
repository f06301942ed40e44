// End to end with a real QEMU 10 and the real test guest, without guestfb: the guest's
// drawpattern output is grabbed with QMP screendump and compared pixel for pixel with the
// documented pattern. Baseline for guestfb's own vhost-user backend: the same guest on QEMU's
// built-in virtio-gpu-pci and on QEMU's own vhost-user-gpu backend.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import {
  bootGuest,
  gpuDeviceId,
  startQemuVhostUserGpu,
  type BootOptions,
  type GuestImage,
  type QemuProcess,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { QmpClient, screendump, type Image } from '../../examples/qemu/qmp.js';
import { comparePattern, decodeCounter, type PatternSpec } from '../../examples/guest/pattern.js';
import { prepareE2e, removeWorkDir } from './helpers/context.js';
import { poll } from '../helpers/wait.js';

const width = 1280;
const height = 800;
const bootTimeoutMs = 180_000;

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;
let baselineFds: number;

const openFds = () => readdirSync('/proc/self/fd').length;

before(async () => {
  ({ tier, guest, workDir } = await prepareE2e('qemu-guest'));
  baselineFds = openFds();
});

after(() => removeWorkDir({ workDir }));

/**
 * Grabs `head` until the display shows what the guest drew: QEMU renders the scanout
 * asynchronously, so the first grab after the guest's message may still show the previous frame.
 * Returns the last grab after `attempts` tries.
 */
async function grabUntil(
  qmp: QmpClient,
  head: number,
  accept: (image: Image) => boolean,
  attempts = 300,
): Promise<Image> {
  const file = path.join(workDir, `head${head}.ppm`);
  let image: Image | undefined;
  let left = attempts;
  await poll(
    async () => {
      image = await screendump(qmp, file, { device: gpuDeviceId, head });
      return accept(image) || --left === 0;
    },
    { intervalMs: 100 },
  );
  return image!;
}

async function withGuest(
  options: BootOptions,
  body: (qemu: QemuProcess, qmp: QmpClient) => Promise<void>,
): Promise<void> {
  const qmpSocket = path.join(workDir, `qmp-${Date.now()}.sock`);
  const qemu = bootGuest(tier, guest, { ...options, qmpSocket, timeoutMs: bootTimeoutMs });
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(qmpSocket);
    await body(qemu, qmp);
  } catch (error) {
    const tail = qemu.console().slice(-2000);
    throw new Error(`${(error as Error).message}\n--- guest console tail:\n${tail}`);
  } finally {
    qmp?.close();
    qemu.kill('SIGKILL');
    await qemu.exited;
    rmSync(qmpSocket, { force: true });
  }
}

function assertPattern(image: Image, spec: PatternSpec): void {
  const result = comparePattern(image, spec);
  assert.equal(
    result.mismatches,
    0,
    `${result.mismatches} pixels differ from the pattern; first ${JSON.stringify(result.first)}`,
  );
}

const settled = (spec: PatternSpec) => (image: Image) =>
  comparePattern(image, spec).mismatches === 0;

describe('test guest on QEMU 10 (no guestfb)', () => {
  test('built-in virtio-gpu-pci, 2 scanouts: fbcon on head 0, exact 1080p pattern on head 1', async () => {
    await withGuest(
      {
        scanouts: 2,
        forceScanouts: true,
        width,
        height,
        guestCommand: 'drawpattern --output last --mode 1920x1080 --frames 3 --hold',
      },
      async (qemu, qmp) => {
        await qemu.waitForConsole(/drawpattern: holding the last frame/);
        const output = /drawpattern: output (\d+) connector \d+ crtc \d+ mode (\d+)x(\d+)/.exec(
          qemu.console(),
        );
        assert.ok(output, 'drawpattern reported its output');
        // Head 1 is forced on in the guest; QEMU's EDID for it lists 1920x1080.
        assert.deepEqual(output.slice(1).map(Number), [1, 1920, 1080]);

        const spec: PatternSpec = { width: 1920, height: 1080, outputIndex: 1, frame: 2 };
        const patternHead = await grabUntil(qmp, 1, settled(spec));
        assertPattern(patternHead, spec);
        assert.equal(decodeCounter(patternHead), 2);

        // Head 0 still shows the kernel console: text, so both dark and lit pixels, no bars.
        const consoleHead = await grabUntil(qmp, 0, () => true);
        assert.equal(consoleHead.width, width);
        let lit = 0;
        for (let i = 0; i < consoleHead.rgb.length; i += 3) {
          if (consoleHead.rgb[i]! + consoleHead.rgb[i + 1]! + consoleHead.rgb[i + 2]! > 200) lit++;
        }
        const pixels = width * height;
        assert.ok(
          lit > 1000 && lit < pixels / 2,
          `console head has ${lit} lit pixels of ${pixels}`,
        );
        assert.ok(comparePattern(consoleHead, { width, height, outputIndex: 0 }).mismatches > 0);
      },
    );
  });

  test("QEMU's own vhost-user-gpu backend: exact pattern and frame counter", async () => {
    const socket = path.join(workDir, 'vhost-user-gpu.sock');
    const backend = startQemuVhostUserGpu(tier, socket);
    try {
      await backend.ready;
      await withGuest(
        {
          gpuSocket: socket,
          width,
          height,
          fbcon: false,
          guestCommand: 'drawpattern --frames 5 --damage box --hold',
        },
        async (qemu, qmp) => {
          await qemu.waitForConsole(/drawpattern: holding the last frame/);
          const spec: PatternSpec = { width, height, outputIndex: 0, frame: 4 };
          const image = await grabUntil(qmp, 0, settled(spec));
          assertPattern(image, spec);
          assert.equal(decodeCounter(image), 4);
        },
      );
    } finally {
      backend.kill('SIGKILL');
      await backend.exited;
      rmSync(socket, { force: true });
    }
  });

  test('guest command exit status comes back through the console marker', async () => {
    const qemu = bootGuest(tier, guest, {
      gpuDevice: 'none',
      guestCommand: 'exit 7',
      timeoutMs: bootTimeoutMs,
    });
    const result = await qemu.exited;
    assert.equal(qemu.guestStatus(), 7, qemu.console().slice(-1500));
    assert.deepEqual(result, { code: 0, signal: null });
  });

  test('fd count returns to baseline', () => {
    assert.equal(openFds(), baselineFds);
  });
});
