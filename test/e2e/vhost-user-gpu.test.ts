// End to end: QEMU 10 with vhost-user-gpu-pci bound to guestfb's own back-end, the test guest
// drawing its documented pattern with drawpattern. Asserts the guest's commands arrive, the
// backing translates to memfd ranges, and reading those ranges straight from the memfd
// reproduces the pattern exactly (zero copies on the back-end's side: the test does the read).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { bootGuest, type GuestImage, type QemuTier } from '../../examples/qemu/qemu.js';
import { comparePattern, decodeCounter, type RgbImage } from '../../examples/guest/pattern.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import type { ScanoutInfo, SourceResource } from '../../plugin/sources/types.js';
import { DrmFormat, fourccName } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { guestContext, prepareE2e, removeWorkDir, withContext } from './helpers/context.js';
import { poll } from '../helpers/wait.js';

const width = 1280;
const height = 800;
const frames = 5;

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;

before(async () => {
  ({ tier, guest, workDir } = await prepareE2e('vhost-user-gpu'));
});

after(() => removeWorkDir({ workDir }));

/** Reads a resource's pixels straight from its memfd ranges into an RGB image. */
function readFromMemfds(resource: SourceResource, scanout: ScanoutInfo): RgbImage {
  const bytes = new Uint8Array(resource.size);
  let at = 0;
  for (const range of resource.backing) {
    const got = fd.pread(range.fd, bytes.subarray(at, at + range.length), range.offset);
    assert.equal(got, range.length, 'pread of a whole range');
    at += range.length;
  }
  const rgb = Buffer.alloc(scanout.width * scanout.height * 3);
  const view = new DataView(bytes.buffer);
  for (let y = 0; y < scanout.height; y++) {
    for (let x = 0; x < scanout.width; x++) {
      const pixel = view.getUint32(scanout.offset + y * scanout.stride + x * 4, true); // XRGB8888
      const o = (y * scanout.width + x) * 3;
      rgb[o] = (pixel >> 16) & 0xff;
      rgb[o + 1] = (pixel >> 8) & 0xff;
      rgb[o + 2] = pixel & 0xff;
    }
  }
  return { width: scanout.width, height: scanout.height, rgb };
}

test('QEMU 10 vhost-user-gpu-pci on guestfb: commands, memfd backing, exact pattern', async (t) => {
  const baselineFds = fd.openFdCount();
  const socketPath = path.join(workDir, 'gpu.sock');
  const logs: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const created: SourceResource[] = [];
  const backings: SourceResource[] = [];
  const scanouts: (ScanoutInfo | null)[] = [];
  let flushes = 0;
  backend.on('resourceCreated', (r) => created.push(r));
  backend.on('backingChanged', (r) => backings.push(r));
  backend.on('scanoutSet', (_head, s) => scanouts.push(s));
  backend.on('flush', () => flushes++);
  const disconnected = new Promise<string>((resolve) => backend.on('disconnected', resolve));

  const qemu = bootGuest(tier, guest, {
    gpuSocket: socketPath,
    width,
    height,
    fbcon: false,
    guestCommand: `drawpattern --frames ${frames} --hold`,
    timeoutMs: 180_000,
  });
  try {
    await qemu.waitForConsole(/drawpattern: holding the last frame/);
    const output = /drawpattern: output \d+ connector \d+ crtc \d+ mode (\d+)x(\d+)/.exec(
      qemu.console(),
    );
    assert.ok(output, 'drawpattern reported its mode');
    assert.deepEqual(output.slice(1).map(Number), [width, height], 'guest took the preferred mode');
    assert.deepEqual(
      backend.heads().map((h) => [h.width, h.height, h.enabled]),
      [[width, height, true]],
      "heads follow QEMU's display info",
    );

    const stats = backend.stats();
    t.diagnostic(`stats: ${JSON.stringify(stats)}`);
    for (const command of [
      'GET_DISPLAY_INFO',
      'RESOURCE_CREATE_2D',
      'RESOURCE_ATTACH_BACKING',
      'SET_SCANOUT',
      'RESOURCE_FLUSH',
    ]) {
      assert.ok((stats[`cmd.${command}`] ?? 0) > 0, `${command} arrived`);
    }
    assert.equal(stats.dropped, 0, 'no dropped chains');
    assert.equal(stats.bytesCopied, 0, 'no pixel copied by the back-end');

    const scanout = backend.scanout(0);
    assert.ok(scanout, 'head 0 shows a resource');
    const resource = backend.resource(scanout.resourceId)!;
    t.diagnostic(
      `resources: ${created.map((r) => `${r.id} ${r.width}x${r.height} ${fourccName(r.fourcc)}`).join(', ')}`,
    );
    t.diagnostic(
      `scanout 0: resource ${scanout.resourceId} ${fourccName(scanout.fourcc)} ${scanout.width}x${scanout.height} ` +
        `stride ${scanout.stride} rect ${JSON.stringify(scanout.rect)}; backing ${resource.size} bytes in ` +
        `${resource.backing.length} memfd ranges; ${flushes} flushes`,
    );
    assert.equal(resource.fourcc, DrmFormat.XRGB8888);
    assert.deepEqual(
      [resource.width, resource.height, resource.stride],
      [width, height, width * 4],
    );
    assert.ok(resource.size >= width * height * 4);
    assert.deepEqual(scanout.rect, { x: 0, y: 0, width, height });
    assert.ok(flushes >= frames, `${flushes} flushes for ${frames} frames`);
    for (const range of resource.backing) {
      assert.equal(range.offset % 4096, 0, 'page-aligned memfd offsets');
      assert.ok(fd.fdSize(range.fd) >= range.offset + range.length, 'range inside the memfd');
    }

    const image = readFromMemfds(resource, scanout);
    const result = comparePattern(image, { width, height, outputIndex: 0, frame: frames - 1 });
    assert.equal(
      result.mismatches,
      0,
      `pixels differ from the pattern: first ${JSON.stringify(result.first)}`,
    );
    assert.equal(decodeCounter(image), frames - 1);
  } catch (error) {
    throw withContext(error, guestContext('backend log', logs, qemu));
  } finally {
    qemu.kill('SIGKILL');
    await qemu.exited;
  }
  const reason = await disconnected;
  t.diagnostic(`disconnected: ${reason}`);
  assert.equal(backend.connected, false);
  assert.equal(backend.resource(created[0]!.id), undefined, 'resources gone with the session');
  backend.close();
  assert.equal(fd.openFdCount(), baselineFds, 'fd count back to baseline');
});

test('connect role: QEMU listens (server=on), guestfb connects; QEMU xres/yres become the mode', async (t) => {
  const baselineFds = fd.openFdCount();
  const socketPath = path.join(workDir, 'qemu-gpu.sock');
  const [modeWidth, modeHeight] = [1024, 768];
  const qemu = bootGuest(tier, guest, {
    gpuDevice: 'vhost-user-gpu-pci,chardev=vgpu',
    extraArgs: ['-chardev', `socket,id=vgpu,path=${socketPath},server=on`],
    width: modeWidth,
    height: modeHeight,
    fbcon: false,
    guestCommand: `drawpattern --frames ${frames} --hold`,
    timeoutMs: 180_000,
  });
  // QEMU waits for its client before it starts the guest; wait for its socket to appear.
  await poll(() => existsSync(socketPath) || qemu.guestStatus() !== null, { intervalMs: 50 });
  const logs: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'connect',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const disconnected = new Promise<string>((resolve) => backend.on('disconnected', resolve));
  try {
    await qemu.waitForConsole(/drawpattern: holding the last frame/);
    assert.deepEqual(
      backend.heads().map((h) => [h.width, h.height]),
      [[modeWidth, modeHeight]],
    );
    const scanout = backend.scanout(0)!;
    assert.ok(scanout, 'head 0 shows a resource');
    assert.deepEqual([scanout.width, scanout.height], [modeWidth, modeHeight]);
    const image = readFromMemfds(backend.resource(scanout.resourceId)!, scanout);
    const result = comparePattern(image, {
      width: modeWidth,
      height: modeHeight,
      outputIndex: 0,
      frame: frames - 1,
    });
    assert.equal(result.mismatches, 0, `first difference ${JSON.stringify(result.first)}`);
    t.diagnostic(
      `connect role: ${modeWidth}x${modeHeight} pattern exact; stats ${JSON.stringify(backend.stats())}`,
    );
  } catch (error) {
    throw withContext(error, guestContext('backend log', logs, qemu));
  } finally {
    qemu.kill('SIGKILL');
    await qemu.exited;
  }
  await disconnected;
  backend.close();
  assert.equal(fd.openFdCount(), baselineFds, 'fd count back to baseline');
});
