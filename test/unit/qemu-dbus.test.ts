// Resize through QEMU's D-Bus display: the exact gdbus call, ordering, errors logged, and a
// back-end without a front-end or a display control declining to offer sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  createVhostUserGpuBackend,
  qemuDbusDisplay,
  validHeadSize,
} from '../../plugin/sources/virtio-gpu/index.js';
import { setUiInfoArgs } from '../../plugin/sources/virtio-gpu/qemu-dbus.js';

test('SetUIInfo call: console object path, session bus or an address, mm and offsets 0', () => {
  assert.deepEqual(setUiInfoArgs(undefined, 1, 1024, 768), [
    'call',
    '--session',
    '--dest',
    'org.qemu',
    '--object-path',
    '/org/qemu/Display1/Console_1',
    '--method',
    'org.qemu.Display1.Console.SetUIInfo',
    '0',
    '0',
    '0',
    '0',
    '1024',
    '768',
  ]);
  assert.deepEqual(setUiInfoArgs('unix:path=/x/bus', 0, 800, 600).slice(0, 3), [
    'call',
    '--address',
    'unix:path=/x/bus',
  ]);
});

test('requests run one at a time in order; a failed call is logged, later ones still run', async () => {
  const calls: string[] = [];
  const logs: string[] = [];
  let release: () => void = () => undefined;
  const display = qemuDbusDisplay({
    address: 'unix:path=/x/bus',
    consoleOf: (head) => head + 2,
    log: (level, message) => logs.push(`${level}: ${message}`),
    run: (args) => {
      calls.push(`${args[6]} ${args.slice(-2).join('x')}`);
      if (calls.length === 1) return new Promise<void>((resolve) => (release = resolve));
      if (calls.length === 2) return Promise.reject(new Error('no such object'));
      return Promise.resolve();
    },
  });
  display.setHeadSize(0, 1024, 768);
  display.setHeadSize(1, 800, 600);
  display.setHeadSize(0, 640, 480);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, ['/org/qemu/Display1/Console_2 1024x768'], 'the second waits');
  release();
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, [
    '/org/qemu/Display1/Console_2 1024x768',
    '/org/qemu/Display1/Console_3 800x600',
    '/org/qemu/Display1/Console_2 640x480',
  ]);
  assert.deepEqual(logs, [
    'info: asked QEMU to offer head 0 1024x768',
    'warn: could not ask QEMU for head 1 800x600: no such object',
    'info: asked QEMU to offer head 0 640x480',
  ]);
});

test('a back-end offers no size without a front-end or without a display control', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-dbus-unit-'));
  const calls: string[] = [];
  const control = {
    setHeadSize: (h: number, w: number, v: number) => calls.push(`${h} ${w}x${v}`),
  };
  const withControl = createVhostUserGpuBackend({
    socketPath: path.join(dir, 'a.sock'),
    role: 'listen',
    displayControl: control,
    log: () => undefined,
  });
  const without = createVhostUserGpuBackend({
    socketPath: path.join(dir, 'b.sock'),
    role: 'listen',
    log: () => undefined,
  });
  try {
    assert.equal(withControl.requestHeadSize(0, 1024, 768), false, 'no front-end connected');
    assert.equal(without.requestHeadSize(0, 1024, 768), false, 'no display control');
    assert.deepEqual(calls, []);
    assert.deepEqual(
      withControl.heads().map((h) => [h.width, h.height]),
      [[1280, 800]],
    );
  } finally {
    withControl.close();
    without.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('head sizes: a head that exists, 1..16384 integers', () => {
  assert.equal(validHeadSize(2, 1, 1024, 768), true);
  assert.equal(validHeadSize(2, 0, 1, 16384), true);
  for (const [head, width, height] of [
    [2, 1024, 768],
    [-1, 1024, 768],
    [0, 0, 768],
    [0, 1024, 0],
    [0, 16385, 768],
    [0, 1024.5, 768],
    [0.5, 1024, 768],
    [0, Number.NaN, 768],
  ] as const) {
    assert.equal(validHeadSize(2, head, width, height), false, `${head} ${width}x${height}`);
  }
});
