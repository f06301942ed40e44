// The guestfb-compositor command: prints its socket, serves a real client (wayland-info), logs
// it, writes periodic screenshots named <output>-<sequence>.png, and exits 0 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { parseEdid } from '../../plugin/sources/virtio-gpu/edid.js';
import {
  Cmd,
  DISPLAY_INFO_SIZE,
  EDID_RESPONSE_SIZE,
  HDR_SIZE,
  Resp,
  encodeRequest,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { Feature } from '../../plugin/vhost-user/vhost-user-protocol.js';
import { TestGuest } from '../helpers/vhost-frontend.js';
import { run } from './native-helpers.js';
import { poll, until } from '../helpers/wait.js';

// dist/test/wayland/ -> repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(root, 'bin/guestfb-compositor.js');

test('guestfb-compositor --help', async () => {
  const { done } = run(process.execPath, [bin, '--help'], process.env);
  const result = await done;
  assert.equal(result.code, 0);
  assert.match(result.stdout, /--screenshot-every MS/);
  const bad = await run(process.execPath, [bin, '--output', 'huge'], process.env).done;
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--output: expected WxH/);
});

test('guestfb-compositor serves clients and writes screenshots until SIGTERM', async () => {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'guestfb-cli-'));
  const shots = path.join(runtime, 'shots');
  try {
    const env = { ...process.env, XDG_RUNTIME_DIR: runtime };
    const child = spawn(
      process.execPath,
      [bin, '--headless', '--socket', 'guestfb-cli-0', '--output', '320x240@30'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const withShots = spawn(
      process.execPath,
      [
        bin,
        '--headless',
        '--socket',
        'guestfb-cli-1',
        '--output',
        '160x120',
        '--screenshot-dir',
        shots,
        '--screenshot-every',
        '100',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (stream: NodeJS.ReadableStream | null) => {
      const state = { text: '' };
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => (state.text += chunk));
      return state;
    };
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const shotsExited = new Promise<number | null>((resolve) => withShots.on('close', resolve));
    const shotsOut = collect(withShots.stdout);
    await poll(() => stdout.text.includes('\n') && shotsOut.text.includes('\n'), {
      intervalMs: 20,
      child,
    }).catch(() => assert.fail(`compositor exited: ${stderr.text}`));
    assert.match(stdout.text, /listening on guestfb-cli-0 \(HEADLESS-1 320x240@30Hz\)/);
    assert.match(stdout.text, /WAYLAND_DISPLAY=guestfb-cli-0/);

    const info = await run('wayland-info', [], { ...env, WAYLAND_DISPLAY: 'guestfb-cli-0' }).done;
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /width: 320 px, height: 240 px, refresh: 30\.000 Hz/);

    await until(() => readdirSync(shots).length >= 2, 'two screenshots', { intervalMs: 20 });
    child.kill('SIGTERM');
    withShots.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(await shotsExited, 0);
    assert.match(stderr.text, /client \d+ \(pid \d+\) connected/);
    assert.match(stderr.text, /client \d+ \(pid \d+\) disconnected|client \d+ disconnected/);

    const files = readdirSync(shots).sort();
    assert.ok(
      files.every((name) => /^HEADLESS-1-\d{6}\.png$/.test(name)),
      files.join(' '),
    );
    assert.equal(files[0], 'HEADLESS-1-000001.png');
    const last = decodePng(readFileSync(path.join(shots, files[files.length - 1])));
    assert.deepEqual([last.width, last.height], [160, 120]);
  } finally {
    rmSync(runtime, { recursive: true, force: true });
  }
});

test('guestfb-compositor --vhost-user-gpu serves vhost-user in-process (heads and size reach the guest) and prints stats on exit', async () => {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'guestfb-cli-vhost-'));
  const gpuSocket = path.join(runtime, 'gpu.sock');
  try {
    const env = { ...process.env, XDG_RUNTIME_DIR: runtime };
    const child = spawn(
      process.execPath,
      [
        bin,
        '--headless',
        '--socket',
        'guestfb-cli-2',
        '--vhost-user-gpu',
        `vm=${gpuSocket},size=1024x600,heads=2`,
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await poll(() => stderr.includes('vhost-user GPU back-end on'), {
      intervalMs: 20,
      child,
    }).catch(() => assert.fail(`compositor exited: ${stderr}`));
    // Speak vhost-user as QEMU would: GET_FEATURES (1), version 1, no payload.
    const socket = net.createConnection({ path: gpuSocket });
    await once(socket, 'connect');
    const request = Buffer.alloc(12);
    request.writeUInt32LE(1, 0);
    request.writeUInt32LE(1, 4);
    socket.write(request);
    const [reply] = (await once(socket, 'data')) as [Buffer];
    assert.equal(reply.readUInt32LE(0), 1, 'reply to GET_FEATURES');
    assert.equal(reply.readUInt32LE(4) & 0x4, 0x4, 'reply flag set');
    assert.equal(reply.readUInt32LE(8), 8, 'a u64 of features');
    const features = reply.readBigUInt64LE(12);
    assert.notEqual(features & (1n << 32n), 0n, 'VIRTIO_F_VERSION_1 offered');
    socket.destroy();
    // A guest driver's view (a vhost-user front-end as QEMU, queues as Linux drives them): both
    // heads' preferred mode is size=, in the display info and in head 0's EDID.
    const connectGuest = async (): Promise<TestGuest> => {
      for (let tries = 0; ; tries++) {
        const candidate = new TestGuest(gpuSocket, { deviceFeatures: Feature.VIRTIO_GPU_F_EDID });
        try {
          await candidate.connect();
          return candidate;
        } catch (error) {
          // The first connection may still be closing on the back-end's side.
          candidate.close();
          if (tries >= 20) throw error;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const guest = await connectGuest();
    const response = await guest.command(
      encodeRequest(Cmd.GET_DISPLAY_INFO, []),
      DISPLAY_INFO_SIZE,
    );
    const info = new DataView(response.buffer);
    assert.equal(info.getUint32(0, true), Resp.OK_DISPLAY_INFO);
    for (const head of [0, 1]) {
      const at = HDR_SIZE + 24 * head;
      assert.deepEqual(
        [8, 12].map((o) => info.getUint32(at + o, true)),
        [1024, 600],
        `head ${head}`,
      );
    }
    const edid = await guest.command(encodeRequest(Cmd.GET_EDID, [0, 0]), EDID_RESPONSE_SIZE);
    assert.equal(new DataView(edid.buffer).getUint32(0, true), Resp.OK_EDID);
    assert.deepEqual(parseEdid(edid.subarray(HDR_SIZE + 8, HDR_SIZE + 8 + 128)), {
      checksumOk: true,
      width: 1024,
      height: 600,
      name: 'vm-0',
    });
    guest.close();
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.match(stdout, /guestfb statistics:\n.*frames presented: 0/s);
  } finally {
    rmSync(runtime, { recursive: true, force: true });
  }
});
