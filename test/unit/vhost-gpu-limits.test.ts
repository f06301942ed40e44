// The limits `--limit NAME=VALUE` sets reach the device of a real vhost-user GPU back-end (a
// socket, the test front-end as QEMU): maxDimension bounds resource sizes with a line naming it,
// logBurst / logPerSecond bound the guest's info lines. Bad values fail when the back-end is made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import { Cmd, encodeRequest, Resp } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { FORMAT_B8G8R8X8, TestGuest } from '../helpers/vhost-frontend.js';
import { until } from '../helpers/wait.js';

test('maxDimension, logBurst and logPerSecond reach the guest device', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guestfb-limits-'));
  const socketPath = path.join(dir, 'gpu.sock');
  const logs: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    name: 'limits',
    limits: { maxDimension: 64 },
    logLimits: { burst: 2, perSecond: 1 },
    log: (level, message) => {
      if (level !== 'debug') logs.push(`${level}: ${message}`);
    },
  });
  const guest = new TestGuest(socketPath, { ramBytes: 16 << 20 });
  try {
    await guest.connect();
    await until(() => backend.connected, 'the session');
    const create = (id: number, w: number, h: number) =>
      encodeRequest(Cmd.RESOURCE_CREATE_2D, [id, FORMAT_B8G8R8X8, w, h]);
    await guest.expect(create(1, 64, 64));
    await guest.expect(create(2, 65, 1), Resp.ERR_INVALID_PARAMETER);
    await guest.expect(create(3, 1, 65), Resp.ERR_INVALID_PARAMETER);
    assert.ok(
      logs.includes(
        'warn: RESOURCE_CREATE_2D: ERR_INVALID_PARAMETER: size 65x1 outside 1..64 (limit maxDimension)',
      ),
      logs.join('\n'),
    );
    // Info lines (one per RESOURCE_CREATE_2D): two pass, the next ten within a second do not.
    const before = logs.filter((line) => line.startsWith('info: resource ')).length;
    assert.equal(before, 1, 'resource 1 was logged');
    for (let id = 10; id < 20; id++) await guest.expect(create(id, 8, 8));
    const created = logs.filter((line) => line.startsWith('info: resource ')).length - before;
    assert.ok(created <= 2, `${created} info lines for 10 resources with logBurst=2`);
  } finally {
    guest.close();
  }
  await until(() => !backend.connected, 'the session to end');
  backend.close();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.throws(
    () => createVhostUserGpuBackend({ role: 'listen', socketPath, logLimits: { burst: -1 } }),
    /log limit burst/,
  );
  assert.throws(
    () => createVhostUserGpuBackend({ role: 'listen', socketPath, limits: { maxDimension: 0 } }),
    /limit maxDimension/,
  );
});
