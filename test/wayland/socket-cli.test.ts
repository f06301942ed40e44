// --socket-mode/--socket-group on the real `guestfb-compositor` process, and both CLIs refusing
// a socket path another process listens on (exit status 1, "in use by another process").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fd } from '../../native/fd.js';
import { until } from '../helpers/wait.js';

const guestfbBin = fileURLToPath(new URL('../../../bin/guestfb.js', import.meta.url));
const compositorBin = fileURLToPath(new URL('../../../bin/guestfb-compositor.js', import.meta.url));

test('guestfb-compositor applies --socket-mode/--socket-group; a live socket is refused by both CLIs', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guestfb-socket-cli-'));
  const gpuSocket = path.join(dir, 'gpu.sock');
  const barSocket = path.join(dir, 'bar.sock');
  const env = { ...process.env, XDG_RUNTIME_DIR: dir };
  // Root may give any group; others one of their own.
  const gid = process.getuid?.() === 0 ? 1 : process.getgid!();
  const child = spawn(
    process.execPath,
    [
      compositorBin,
      '--headless',
      '--output',
      '64x32',
      '--socket',
      'wayland-socket-cli',
      '--vhost-user-gpu',
      `vm=${gpuSocket}`,
      '--ivshmem',
      `bar=${barSocket}`,
      '--bar-size',
      '64K',
      '--socket-mode',
      '0640',
      '--socket-group',
      String(gid),
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    await until(() => /vhost-user GPU back-end on/.test(stderr), 'the back-end to listen', {
      child,
    });
    for (const socket of [gpuSocket, barSocket]) {
      const stat = fs.statSync(socket);
      assert.equal((stat.mode & 0o7777).toString(8), '640', socket);
      assert.equal(stat.gid, gid, socket);
    }

    // A second compositor and a standalone guestfb on the same paths: refused, status 1.
    const again = spawnSync(
      process.execPath,
      [compositorBin, '--headless', '--socket', 'wayland-socket-cli-2', '--ivshmem', barSocket],
      { env, encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(again.status, 1, again.stderr);
    assert.match(again.stderr, new RegExp(`${barSocket} is in use by another process`));
    const standalone = spawnSync(process.execPath, [guestfbBin, '--vhost-user-gpu', gpuSocket], {
      env: { ...env, WAYLAND_DISPLAY: 'wayland-socket-cli' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(standalone.status, 1, standalone.stderr);
    assert.match(
      standalone.stderr,
      new RegExp(`--vhost-user-gpu ${gpuSocket}: ${gpuSocket} is in use by another process`),
    );
    // The first compositor still owns and serves its sockets.
    assert.equal(fd.unixProbe(gpuSocket), 'OK');
    assert.equal(fd.unixProbe(barSocket), 'OK');
    assert.equal(child.exitCode, null);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  assert.equal(fs.existsSync(gpuSocket), false, 'removed on exit');
  assert.equal(fs.existsSync(barSocket), false, 'removed on exit');
  fs.rmSync(dir, { recursive: true, force: true });
});
