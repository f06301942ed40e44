import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HeadInfo } from '../../plugin/sources/types.js';
import { DISPLAY_INFO_SIZE, HDR_SIZE, Resp } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  GpuRequest,
  headsFromModes,
  parseDisplayInfo,
  QemuDisplayChannel,
  type DisplayChannelIo,
  type DisplayModes,
} from '../../plugin/sources/virtio-gpu/qemu-display.js';
import { encodeMessage, parseHeader } from '../../plugin/vhost-user/vhost-user-protocol.js';
import { fd } from '../../native/fd.js';
import { sendAll } from '../../plugin/vhost-user/server.js';

/** The QEMU side of the display socket, in memory. */
class FakeQemuSide implements DisplayChannelIo {
  sent: Uint8Array[] = [];
  inbox: { data: Uint8Array; fds: number[] }[] = [];
  closed: number[] = [];
  watcher: ((error?: Error) => void) | null = null;
  send(_fd: number, data: Uint8Array): void {
    this.sent.push(data);
  }
  recv(): { data: Uint8Array; fds: number[] } | null {
    return this.inbox.shift() ?? null;
  }
  watchReadable(_fd: number, onReadable: (error?: Error) => void): () => void {
    this.watcher = onReadable;
    return () => (this.watcher = null);
  }
  close(fd: number): void {
    this.closed.push(fd);
  }
  reply(request: number, payload?: Uint8Array, fds: number[] = []): void {
    this.inbox.push({ data: encodeMessage(request, 0x4, payload), fds });
    this.watcher?.();
  }
  requests(): number[] {
    return this.sent.map((m) => parseHeader(m).request);
  }
}

function displayInfo(modes: [number, number, boolean][]): Uint8Array {
  const out = new Uint8Array(DISPLAY_INFO_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, Resp.OK_DISPLAY_INFO, true);
  modes.forEach(([w, h, enabled], i) => {
    view.setUint32(HDR_SIZE + 24 * i + 8, w, true);
    view.setUint32(HDR_SIZE + 24 * i + 12, h, true);
    view.setUint32(HDR_SIZE + 24 * i + 16, enabled ? 1 : 0, true);
  });
  return out;
}

test('handshake: features, then display info; SCANOUT only once ready; QEMU fds closed', () => {
  const qemu = new FakeQemuSide();
  const ready: DisplayModes[] = [];
  const channel = new QemuDisplayChannel(
    42,
    qemu,
    2,
    () => {},
    (modes) => ready.push(modes),
  );
  channel.start();
  assert.deepEqual(qemu.requests(), [GpuRequest.GET_PROTOCOL_FEATURES]);
  channel.scanout(0, 640, 480);
  assert.equal(qemu.sent.length, 1, 'nothing sent before the handshake ends');
  qemu.reply(GpuRequest.GET_PROTOCOL_FEATURES, new Uint8Array(8), [77]);
  assert.deepEqual(qemu.closed, [77], 'a stray fd from QEMU is closed');
  assert.deepEqual(qemu.requests(), [
    1,
    GpuRequest.SET_PROTOCOL_FEATURES,
    GpuRequest.GET_DISPLAY_INFO,
  ]);
  assert.equal(channel.ready, false);
  qemu.reply(GpuRequest.GET_DISPLAY_INFO, displayInfo([[1920, 1080, true]]));
  assert.equal(channel.ready, true);
  assert.deepEqual(ready, [
    [
      { x: 0, y: 0, width: 1920, height: 1080, enabled: true },
      { x: 0, y: 0, width: 0, height: 0, enabled: false },
    ],
  ]);
  channel.scanout(0, 1920, 1080);
  const last = qemu.sent.at(-1)!;
  assert.equal(parseHeader(last).request, GpuRequest.SCANOUT);
  assert.deepEqual([...new Uint32Array(last.slice(12).buffer)], [0, 1920, 1080]);
  channel.close();
  assert.deepEqual(qemu.closed, [77, 42]);
  assert.equal(qemu.watcher, null);
});

test('QEMU closing or garbling the channel before answering opens the gate with null', () => {
  for (const failure of ['eof', 'garbage', 'poll-error'] as const) {
    const qemu = new FakeQemuSide();
    const ready: DisplayModes[] = [];
    const channel = new QemuDisplayChannel(
      5,
      qemu,
      1,
      () => {},
      (modes) => ready.push(modes),
    );
    channel.start();
    if (failure === 'eof') {
      qemu.inbox.push({ data: new Uint8Array(0), fds: [] });
      qemu.watcher!();
    } else if (failure === 'garbage') {
      const huge = encodeMessage(1, 4);
      new DataView(huge.buffer).setUint32(8, 1 << 30, true);
      qemu.inbox.push({ data: huge, fds: [] });
      qemu.watcher!();
    } else {
      qemu.watcher!(new Error('EPOLLERR'));
    }
    assert.deepEqual(ready, [null], failure);
    assert.equal(channel.ready, true, `${failure}: queues may run`);
    assert.deepEqual(qemu.closed, [5], `${failure}: fd closed once`);
    channel.close();
    assert.deepEqual(qemu.closed, [5]);
  }
});

test('display info parsing and head selection', () => {
  assert.equal(parseDisplayInfo(new Uint8Array(100), 1), null, 'short');
  const wrongType = displayInfo([[800, 600, true]]);
  new DataView(wrongType.buffer).setUint32(0, Resp.ERR_UNSPEC, true);
  assert.equal(parseDisplayInfo(wrongType, 1), null, 'error response');
  const defaults: HeadInfo[] = [0, 1].map((id) => ({
    id,
    width: 1280,
    height: 800,
    x: 0,
    y: 0,
    enabled: id === 0,
    name: `h${id}`,
  }));
  const modes = parseDisplayInfo(
    displayInfo([
      [1024, 768, true],
      [0, 0, false],
    ]),
    2,
  );
  const heads = headsFromModes(defaults, modes, false);
  assert.deepEqual(
    heads.map((h) => [h.width, h.height, h.enabled, h.name]),
    [
      [1024, 768, true, 'h0'],
      [1280, 800, false, 'h1'],
    ],
  );
  assert.deepEqual(headsFromModes(defaults, modes, true), defaults, 'fixed size wins');
  assert.deepEqual(headsFromModes(defaults, null, false), defaults);
  // Sizes from QEMU outside what a head can be keep the configured head.
  const huge = parseDisplayInfo(
    displayInfo([
      [0xffffffff, 768, true],
      [16385, 16384, true],
    ]),
    2,
  );
  assert.deepEqual(headsFromModes(defaults, huge, false), defaults, 'out-of-range sizes ignored');
  const edge = parseDisplayInfo(
    displayInfo([
      [16384, 1, true],
      [1, 16384, true],
    ]),
    2,
  );
  assert.deepEqual(
    headsFromModes(defaults, edge, false).map((h) => [h.width, h.height]),
    [
      [16384, 1],
      [1, 16384],
    ],
  );
});

test('a QEMU that never reads its display channel cannot block the loop: the channel ends, one line', () => {
  const baseline = fd.openFdCount();
  // Blocking, like the socketpair QEMU creates; the test's end never reads.
  const [ours, qemuEnd] = fd.socketpair(false);
  const inbox: { data: Uint8Array; fds: number[] }[] = [];
  let watcher: ((error?: Error) => void) | null = null;
  const logs: string[] = [];
  const ready: DisplayModes[] = [];
  const channel = new QemuDisplayChannel(
    ours,
    {
      send: (x, data) => sendAll(fd, x, data),
      recv: () => inbox.shift() ?? null,
      watchReadable: (_x, cb) => {
        watcher = cb;
        return () => (watcher = null);
      },
      close: (x) => fd.close(x),
    },
    1,
    (message) => logs.push(message),
    (modes) => ready.push(modes),
  );
  channel.start();
  inbox.push({
    data: encodeMessage(GpuRequest.GET_PROTOCOL_FEATURES, 4, new Uint8Array(8)),
    fds: [],
  });
  watcher!();
  inbox.push({
    data: encodeMessage(GpuRequest.GET_DISPLAY_INFO, 4, displayInfo([[800, 600, true]])),
    fds: [],
  });
  watcher!();
  assert.equal(ready.length, 1);
  // 100,000 SCANOUTs (2.4 MB) into a socket nobody drains: a blocking send would hang here.
  for (let i = 0; i < 100_000; i++) channel.scanout(0, 800 + (i % 2), 600);
  assert.deepEqual(
    logs.filter((line) => line.startsWith('display channel closed')),
    [
      logs.find((line) =>
        /^display channel closed: send failed: .*EAGAIN|Resource temporarily/.test(line),
      ),
    ],
  );
  assert.equal(logs.length, 1, logs.join('\n'));
  assert.equal(watcher, null, 'the channel stopped watching');
  fd.close(qemuEnd);
  assert.equal(fd.openFdCount(), baseline, 'the channel closed its fd');
});
