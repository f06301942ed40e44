// A client that truncates its wl_shm pool while the compositor reads it (issue: SIGBUS killed
// the compositor, and with it every guest shown in-process). For 10 s, real client processes
// commit from an unsealed memfd they keep shrinking and regrowing; the guestfb-compositor
// process must stay up, end each such client with wl_shm.error.invalid_fd on its wl_buffer, and
// still serve an ordinary client (wayland-info) afterwards. Before the fix it died of SIGBUS
// within seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, waylandInfo } from './native-helpers.js';
import { until } from '../helpers/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const bin = path.join(root, 'bin/guestfb-compositor.js');
const client = path.resolve(here, '../helpers/truncating-client.js');
const LOOP_MS = 10_000;

test('a client truncating its pool in a loop for 10 s gets a protocol error; the compositor lives', async () => {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'guestfb-truncate-'));
  const env = { ...process.env, XDG_RUNTIME_DIR: runtime };
  const compositor = spawn(
    process.execPath,
    [bin, '--headless', '--socket', 'truncate-0', '--output', '320x240@60'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  compositor.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  compositor.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    compositor.on('close', (code, signal) => resolve({ code, signal })),
  );
  try {
    await until(() => stdout.includes('WAYLAND_DISPLAY='), 'the compositor listening', {
      child: compositor,
    });
    const clientEnv = { ...env, WAYLAND_DISPLAY: 'truncate-0' };
    const outcomes = new Map<string, number>();
    const deadline = Date.now() + LOOP_MS;
    while (Date.now() < deadline) {
      const left = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
      const result = await run(process.execPath, [client, String(left)], clientEnv).done;
      const line = result.stdout.trim() || `no output (code ${result.code}): ${result.stderr}`;
      outcomes.set(line, (outcomes.get(line) ?? 0) + 1);
      assert.equal(
        compositor.exitCode,
        null,
        `compositor died: ${compositor.signalCode} ${stderr}`,
      );
    }
    const summary = [...outcomes].map(([line, n]) => `${n}x ${line}`).join(', ');
    console.log(`truncating clients over ${LOOP_MS / 1000} s: ${summary}`);
    assert.ok(
      (outcomes.get('protocol-error wl_buffer 2') ?? 0) > 0,
      `no client got wl_shm.error.invalid_fd on its wl_buffer: ${summary}`,
    );
    // invalid_fd on wl_shm: the pool was already short when create_pool arrived.
    for (const line of outcomes.keys()) {
      assert.match(line, /^(protocol-error (wl_buffer|wl_shm) 2|survived)$/, summary);
    }
    assert.equal(compositor.exitCode, null, 'the compositor is still running');
    const info = await waylandInfo('truncate-0', runtime);
    assert.ok(info.globals.some(([name]) => name === 'wl_shm'));
    assert.match(stderr + stdout, /the client truncated its pool/);
  } finally {
    compositor.kill('SIGTERM');
    const end = await exited;
    rmSync(runtime, { recursive: true, force: true });
    assert.equal(end.signal, null, `compositor ended by ${end.signal}: ${stderr}`);
  }
});
