// The back-end over real sockets with real fds: the test plays QEMU (front-end and the
// vhost-user-gpu display side) over AF_UNIX with SCM_RIGHTS, guest RAM is a memfd, kicks and
// interrupts are eventfds. Checks the whole session and that the fd count returns to baseline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import type { ScanoutInfo, SourceResource } from '../../plugin/sources/types.js';
import {
  Cmd,
  DISPLAY_INFO_SIZE,
  encodeMemEntries,
  encodeRequest,
  HDR_SIZE,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeMemTable,
  encodeMessage,
  encodeVringAddr,
  encodeVringState,
  Feature,
  Flags,
  FrameReader,
  parseU64,
  Request,
  u64Payload,
  type Message,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import { GpuRequest } from '../../plugin/sources/virtio-gpu/qemu-display.js';
import { Allocator, ramRegions, RAM_SIZE, RingDriver, USER_BASE } from './virtio-gpu-harness.js';

function readable(socket: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = fd.watchReadable(socket, () => {
      stop();
      resolve();
    });
  });
}

/** Reads whole messages from a socket (vhost-user framing; `versioned` false for vhost-user-gpu). */
class Peer {
  private readonly reader: FrameReader;
  private readonly queue: Message[] = [];
  constructor(
    readonly socket: number,
    versioned = true,
  ) {
    this.reader = new FrameReader((x) => fd.close(x), 1 << 20, versioned);
  }
  send(
    request: number,
    payload?: Uint8Array,
    fds: number[] = [],
    flags: number = Flags.VERSION,
  ): void {
    fd.unixSend(this.socket, encodeMessage(request, flags, payload), fds);
  }
  async next(): Promise<Message | null> {
    for (;;) {
      const queued = this.queue.shift();
      if (queued) return queued;
      const chunk = fd.pollReadable(this.socket, 0) ? fd.unixRecv(this.socket, 65536) : null;
      if (chunk === null) {
        await readable(this.socket);
        continue;
      }
      if (chunk.data.length === 0) return null;
      this.queue.push(...this.reader.push(chunk.data, chunk.fds));
    }
  }
  /** Sends with NEED_REPLY and returns the reply payload. */
  async call(request: number, payload?: Uint8Array, fds: number[] = []): Promise<Uint8Array> {
    this.send(request, payload, fds, Flags.VERSION | Flags.NEED_REPLY);
    const reply = await this.next();
    assert.ok(reply, `reply to ${request}`);
    assert.equal(reply.request, request);
    assert.ok(reply.flags & Flags.REPLY);
    return reply.payload;
  }
}

test('a full session over real sockets: memfd RAM, eventfds, display channel, teardown to baseline', async () => {
  const baseline = fd.openFdCount();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-vhost-session-'));
  const socketPath = path.join(dir, 'gpu.sock');
  const logs: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    name: 'session',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  const events: string[] = [];
  const scanouts: (ScanoutInfo | null)[] = [];
  const created: SourceResource[] = [];
  backend.on('resourceCreated', (r) => created.push(r));
  backend.on('scanoutSet', (_h, s) => scanouts.push(s));
  for (const name of [
    'headsChanged',
    'resourceCreated',
    'backingChanged',
    'scanoutSet',
    'flush',
    'resourceDestroyed',
  ] as const) {
    backend.on(name, () => events.push(name));
  }
  const disconnected = new Promise<string>((resolve) => backend.on('disconnected', resolve));

  // Guest RAM: one memfd, mapped by the "guest" (this test) too.
  const memfd = fd.memfdCreate('guest-ram', true);
  fd.ftruncate(memfd, RAM_SIZE);
  const mapping = fd.mmap(memfd, 0, RAM_SIZE, true);
  const ram = new Uint8Array(mapping);
  const alloc = new Allocator();
  const control = new RingDriver(ram, alloc, 16);
  alloc.mark();
  const kick = fd.eventfd(0);
  const call = fd.eventfd(0);
  // Created blocking, like the socketpair QEMU creates.
  const [gpuOurs, gpuTheirs] = fd.socketpair(false);

  const front = new Peer(fd.unixConnect(socketPath));
  const display = new Peer(gpuOurs, false);
  try {
    const features = parseU64(await front.call(Request.GET_FEATURES));
    assert.ok(features & Feature.VIRTIO_GPU_F_EDID);
    const protocol = parseU64(await front.call(Request.GET_PROTOCOL_FEATURES));
    front.send(Request.SET_PROTOCOL_FEATURES, u64Payload(protocol));
    assert.equal(parseU64(await front.call(Request.SET_OWNER)), 0n);
    assert.equal(
      parseU64(
        await front.call(
          Request.SET_FEATURES,
          u64Payload(
            Feature.VERSION_1 |
              Feature.VHOST_USER_F_PROTOCOL_FEATURES |
              Feature.VIRTIO_GPU_F_EDID |
              Feature.RING_EVENT_IDX |
              Feature.RING_INDIRECT_DESC,
          ),
        ),
      ),
      0n,
    );
    const regions = ramRegions(RAM_SIZE);
    assert.equal(
      parseU64(await front.call(Request.SET_MEM_TABLE, encodeMemTable(regions), [memfd, memfd])),
      0n,
    );
    // QEMU passes the display socket; the back-end asks for protocol features and display info.
    assert.equal(parseU64(await front.call(Request.GPU_SET_SOCKET, undefined, [gpuTheirs])), 0n);
    fd.close(gpuTheirs);
    const getFeatures = await display.next();
    assert.equal(getFeatures?.request, GpuRequest.GET_PROTOCOL_FEATURES);
    display.send(GpuRequest.GET_PROTOCOL_FEATURES, u64Payload(3n), [], 0x4);
    const setFeatures = await display.next();
    assert.equal(setFeatures?.request, GpuRequest.SET_PROTOCOL_FEATURES);
    const getInfo = await display.next();
    assert.equal(getInfo?.request, GpuRequest.GET_DISPLAY_INFO);

    // Rings, kick and call.
    await front.call(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: 16 }));
    await front.call(Request.SET_VRING_BASE, encodeVringState({ index: 0, num: 0 }));
    await front.call(
      Request.SET_VRING_ADDR,
      encodeVringAddr({
        index: 0,
        descUser: BigInt(USER_BASE + control.descGpa),
        usedUser: BigInt(USER_BASE + control.usedGpa),
        availUser: BigInt(USER_BASE + control.availGpa),
      }),
    );
    await front.call(Request.SET_VRING_CALL, u64Payload(0n), [call]);
    await front.call(Request.SET_VRING_KICK, u64Payload(0n), [kick]);
    await front.call(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }));

    // The guest asks for its display before QEMU answered: held until the display info arrives.
    const submit = async (request: Uint8Array, responseSize: number): Promise<Uint8Array> => {
      const reqGpa = alloc.take(request.length, 8);
      ram.set(request, reqGpa);
      const respGpa = alloc.take(responseSize, 8);
      control.addChain([
        { gpa: reqGpa, length: request.length, write: false },
        { gpa: respGpa, length: responseSize, write: true },
      ]);
      control.setUsedEvent(control.usedIdx()); // EVENT_IDX: interrupt me for the next one
      fd.eventfdWrite(kick);
      for (;;) {
        const used = control.takeUsed();
        if (used.length) {
          assert.equal(used.length, 1);
          alloc.reset();
          return ram.slice(respGpa, respGpa + used[0]!.length);
        }
        await readable(call);
        fd.eventfdRead(call);
      }
    };
    const pending = submit(encodeRequest(Cmd.GET_DISPLAY_INFO, []), DISPLAY_INFO_SIZE);
    const info = new Uint8Array(DISPLAY_INFO_SIZE);
    const infoView = new DataView(info.buffer);
    infoView.setUint32(0, Resp.OK_DISPLAY_INFO, true);
    infoView.setUint32(HDR_SIZE + 8, 1024, true);
    infoView.setUint32(HDR_SIZE + 12, 768, true);
    infoView.setUint32(HDR_SIZE + 16, 1, true);
    display.send(GpuRequest.GET_DISPLAY_INFO, info, [], 0x4);
    const displayInfo = new DataView((await pending).buffer);
    assert.equal(displayInfo.getUint32(0, true), Resp.OK_DISPLAY_INFO);
    assert.deepEqual(
      [displayInfo.getUint32(HDR_SIZE + 8, true), displayInfo.getUint32(HDR_SIZE + 12, true)],
      [1024, 768],
    );
    assert.deepEqual(
      backend.heads().map((h) => [h.width, h.height, h.name]),
      [[1024, 768, 'session']],
    );

    // A framebuffer: create, attach scattered pages, scan out, flush.
    const [w, h] = [64, 16];
    const respType = async (request: Uint8Array) =>
      new DataView((await submit(request, HDR_SIZE)).buffer).getUint32(0, true);
    assert.equal(
      await respType(encodeRequest(Cmd.RESOURCE_CREATE_2D, [7, 2, w, h])),
      Resp.OK_NODATA,
    );
    const pages = alloc.reserve(4 * 4096);
    ram.fill(0x5a, pages, pages + 4 * 4096);
    const entries = encodeMemEntries([
      { addr: pages + 2 * 4096, length: 2048 },
      { addr: pages, length: 2048 },
    ]);
    assert.equal(
      await respType(encodeRequest(Cmd.RESOURCE_ATTACH_BACKING, [7, 2], {}, entries)),
      Resp.OK_NODATA,
    );
    assert.equal(
      await respType(encodeRequest(Cmd.SET_SCANOUT, [0, 0, w, h, 0, 7])),
      Resp.OK_NODATA,
    );
    const scanoutMessage = await display.next();
    assert.equal(scanoutMessage?.request, GpuRequest.SCANOUT, 'QEMU is told the mode');
    assert.deepEqual([...new Uint32Array(scanoutMessage!.payload.slice().buffer)], [0, w, h]);
    assert.equal(
      await respType(encodeRequest(Cmd.RESOURCE_FLUSH, [0, 0, w, h, 7, 0])),
      Resp.OK_NODATA,
    );
    const resource = backend.resource(7)!;
    assert.equal(resource.size, w * h * 4);
    // The borrowed fds are real: read the backing through them.
    for (const range of resource.backing) {
      const bytes = new Uint8Array(range.length);
      assert.equal(fd.pread(range.fd, bytes, range.offset), range.length);
      assert.ok(bytes.every((b) => b === 0x5a));
      assert.notEqual(range.fd, memfd, 'the back-end holds its own copy of the fd');
    }
    const copy = new Uint8Array(w * h * 4);
    assert.equal(backend.readPixels(7, { x: 0, y: 0, width: w, height: h }, copy), true);
    assert.ok(copy.every((b) => b === 0x5a));
    assert.deepEqual(events, [
      'headsChanged',
      'resourceCreated',
      'backingChanged',
      'scanoutSet',
      'flush',
    ]);
    assert.equal(scanouts[0]!.resourceId, 7);
  } finally {
    fd.close(front.socket);
  }
  assert.equal(await disconnected, 'front-end closed the connection');
  assert.equal(backend.connected, false);
  assert.equal(await display.next(), null, 'the display channel is closed with the session');
  assert.equal(backend.stats().flushes, 1, 'stats survive the session');
  backend.close();
  fd.close(display.socket);
  fd.close(kick);
  fd.close(call);
  fd.close(memfd);
  fd.munmap(mapping);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(fd.openFdCount(), baseline, `fd count back to baseline; log:\n${logs.join('\n')}`);
});

test("connect role: guestfb connects to QEMU's server socket", async () => {
  const baseline = fd.openFdCount();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-vhost-connect-'));
  const socketPath = path.join(dir, 'qemu.sock');
  const listener = fd.unixListen(socketPath, 1);
  const backend = createVhostUserGpuBackend({ socketPath, role: 'connect', log: () => {} });
  const conn = fd.unixAccept(listener);
  assert.ok(conn >= 0, 'the back-end connected');
  const front = new Peer(conn);
  const disconnected = new Promise<string>((resolve) => backend.on('disconnected', resolve));
  assert.ok(parseU64(await front.call(Request.GET_FEATURES)) & Feature.VERSION_1);
  // A protocol violation (wrong version) ends the session.
  front.send(Request.SET_OWNER, undefined, [], 0x2);
  assert.match(await disconnected, /protocol error/);
  assert.equal(await front.next(), null);
  backend.close();
  fd.close(conn);
  fd.close(listener);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(fd.openFdCount(), baseline);
});
