import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cmd, encodeRequest, Resp } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeConfig,
  encodeMemTable,
  encodeSingleRegion,
  encodeVringState,
  Feature,
  parseConfig,
  parseU64,
  parseVringState,
  ProtocolFeature,
  Request,
  u64Payload,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import { GpuBench, HIGH_START, ramRegions, responseType, USER_BASE } from './virtio-gpu-harness.js';

test('feature negotiation: offered features and protocol features', () => {
  const bench = new GpuBench();
  const features = parseU64(bench.send(Request.GET_FEATURES)!);
  for (const bit of [
    Feature.VERSION_1,
    Feature.VHOST_USER_F_PROTOCOL_FEATURES,
    Feature.RING_INDIRECT_DESC,
    Feature.RING_EVENT_IDX,
    Feature.RING_RESET,
    Feature.VIRTIO_GPU_F_EDID,
  ]) {
    assert.ok(features & bit, `feature 0x${bit.toString(16)}`);
  }
  assert.equal(features & Feature.VIRTIO_GPU_F_RESOURCE_BLOB, 0n, 'blob only when asked');
  assert.equal(features & Feature.VIRTIO_GPU_F_VIRGL, 0n);
  const protocol = parseU64(bench.send(Request.GET_PROTOCOL_FEATURES)!);
  for (const bit of Object.values(ProtocolFeature)) assert.ok(protocol & bit);
  assert.equal(parseU64(bench.send(Request.GET_QUEUE_NUM)!), 2n);
  assert.equal(parseU64(bench.send(Request.GET_MAX_MEM_SLOTS)!), 32n);
});

test('REPLY_ACK: success and failure acknowledgements', () => {
  const bench = new GpuBench();
  assert.equal(parseU64(bench.send(Request.SET_OWNER, undefined, [], true)!), 0n);
  assert.equal(
    parseU64(bench.send(Request.SET_VRING_NUM, encodeVringState({ index: 5, num: 8 }), [], true)!),
    1n,
  );
  assert.equal(
    parseU64(bench.send(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: 7 }), [], true)!),
    1n,
  );
  assert.equal(
    parseU64(bench.send(Request.SET_LOG_BASE, new Uint8Array(16), [], true)!),
    1n,
    'unsupported',
  );
  assert.equal(bench.send(Request.SET_OWNER), null, 'no reply without need_reply');
  assert.equal(
    parseU64(bench.send(Request.SET_FEATURES, new Uint8Array(3), [], true)!),
    1n,
    'short payload',
  );
});

test('GET_CONFIG returns virtio_gpu_config with the scanout count', () => {
  const bench = new GpuBench({ scanouts: 3 });
  const reply = bench.send(
    Request.GET_CONFIG,
    encodeConfig({ offset: 0, size: 16, flags: 0, data: new Uint8Array(16) }),
  )!;
  const config = parseConfig(reply);
  assert.equal(config.size, 16);
  const view = new DataView(config.data.buffer, config.data.byteOffset, 16);
  assert.deepEqual(
    [0, 4, 8, 12].map((o) => view.getUint32(o, true)),
    [0, 0, 3, 0],
  );
  const tail = parseConfig(
    bench.send(
      Request.GET_CONFIG,
      encodeConfig({ offset: 8, size: 12, flags: 0, data: new Uint8Array(12) }),
    )!,
  );
  assert.deepEqual([...tail.data], [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(
    bench.send(
      Request.GET_CONFIG,
      encodeConfig({ offset: 0, size: 300, flags: 0, data: new Uint8Array(300) }),
    ),
    null,
  );
});

test('GET_VRING_BASE stops the ring, returns its index, closes the kick fd; restart resumes', () => {
  const bench = new GpuBench();
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  const kickFd = bench.device.queues[0]!.kickFd!;
  const state = parseVringState(
    bench.send(Request.GET_VRING_BASE, encodeVringState({ index: 0, num: 0 }))!,
  );
  assert.deepEqual(state, { index: 0, num: 2 });
  assert.ok(bench.fds.closed.includes(kickFd));
  assert.equal(bench.device.queues[0]!.started, false);
  bench.send(Request.SET_VRING_BASE, encodeVringState({ index: 0, num: 2 }));
  bench.send(Request.SET_VRING_KICK, u64Payload(0n), [bench.fds.dup(bench.kick[0])]);
  assert.equal(
    responseType(bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408)),
    Resp.OK_DISPLAY_INFO,
  );
});

test('fds: replaced, removed and reset fds are closed; extra fds are closed; dispose returns to baseline', () => {
  const bench = new GpuBench();
  const baseline = new Set([bench.memfd, ...bench.kick, ...bench.call]);
  const regionFds = bench.device.memory.regions.map((r) => r.fd);
  // A new table replaces the old: old fds closed and unmapped.
  const regions = ramRegions();
  bench.send(
    Request.SET_MEM_TABLE,
    encodeMemTable(regions),
    regions.map(() => bench.fds.dup(bench.memfd)),
  );
  for (const fd of regionFds) assert.ok(bench.fds.closed.includes(fd));
  assert.equal(bench.fds.mappings.size, 2);
  // Kick and call replaced: old closed.
  const oldCall = bench.device.queues[1]!.callFd!;
  bench.send(Request.SET_VRING_CALL, u64Payload(1n), [bench.fds.dup(bench.call[1])]);
  assert.ok(bench.fds.closed.includes(oldCall));
  // An unexpected fd with a message that takes none, and with an unknown request.
  const stray = bench.fds.eventfd();
  bench.send(Request.SET_OWNER, undefined, [stray]);
  assert.ok(bench.fds.closed.includes(stray));
  const stray2 = bench.fds.eventfd();
  bench.send(999, undefined, [stray2]);
  assert.ok(bench.fds.closed.includes(stray2));
  // A memory table with fewer fds than regions is refused, and its fds closed.
  const lone = bench.fds.dup(bench.memfd);
  bench.send(Request.SET_MEM_TABLE, encodeMemTable(regions), [lone]);
  assert.ok(bench.fds.closed.includes(lone));
  // Vring ERR with and without fd.
  bench.send(Request.SET_VRING_ERR, u64Payload(0n), [bench.fds.eventfd()]);
  bench.send(Request.SET_VRING_ERR, u64Payload(0x100n));
  // GPU socket without a taker is closed.
  const gpuSocket = bench.fds.eventfd();
  bench.send(Request.GPU_SET_SOCKET, undefined, [gpuSocket]);
  assert.ok(bench.fds.closed.includes(gpuSocket));
  bench.device.dispose();
  assert.deepEqual(new Set(bench.fds.files.keys()), baseline, 'only the test-owned fds remain');
  assert.equal(bench.fds.mappings.size, 0, 'all regions unmapped');
  assert.equal(bench.fds.watchers.size, 0);
});

test('ADD_MEM_REG / REM_MEM_REG: rings and backing follow the table', () => {
  const bench = new GpuBench();
  bench.command(encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 32, 32]));
  const page = bench.alloc.reserve(4096);
  const entries = new Uint8Array(16 * 1);
  new DataView(entries.buffer).setBigUint64(0, BigInt(page), true);
  new DataView(entries.buffer).setUint32(8, 4096, true);
  bench.command(encodeRequest(Cmd.RESOURCE_ATTACH_BACKING, [1, 1], {}, entries));
  const high = ramRegions()[1]!;
  const oldFd = bench.device.memory.regions[1]!.fd;
  let oldFdOpenAtEvent = false;
  bench.emitter.on('backingChanged', () => (oldFdOpenAtEvent = bench.fds.files.has(oldFd)));
  bench.events.length = 0;
  assert.equal(parseU64(bench.send(Request.REM_MEM_REG, encodeSingleRegion(high), [], true)!), 0n);
  assert.equal(bench.device.gpu.resource(1)!.backing.length, 0, 'backing left the table');
  assert.deepEqual(
    bench.events.map((e) => e.name),
    ['backingChanged'],
  );
  assert.ok(oldFdOpenAtEvent, 'the old fd is still open while listeners hear of the change');
  assert.ok(bench.fds.closed.includes(oldFd), 'and closed after');
  assert.equal(
    parseU64(bench.send(Request.REM_MEM_REG, encodeSingleRegion(high), [], true)!),
    1n,
    'unknown region',
  );
  const newFd = bench.fds.dup(bench.memfd);
  assert.equal(
    parseU64(bench.send(Request.ADD_MEM_REG, encodeSingleRegion(high), [newFd], true)!),
    0n,
  );
  assert.deepEqual(bench.device.gpu.resource(1)!.backing, [
    { fd: newFd, offset: page, length: 4096 },
  ]);
  assert.equal(
    responseType(bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408)),
    Resp.OK_DISPLAY_INFO,
    'rings re-resolved',
  );
  const overlapping = { ...high, userAddr: BigInt(USER_BASE) * 2n };
  const fd = bench.fds.dup(bench.memfd);
  assert.equal(
    parseU64(bench.send(Request.ADD_MEM_REG, encodeSingleRegion(overlapping), [fd], true)!),
    1n,
  );
  assert.ok(bench.fds.closed.includes(fd), 'refused region fd closed');
  const missingFd = parseU64(
    bench.send(
      Request.ADD_MEM_REG,
      encodeSingleRegion({ ...high, guestAddr: 1n << 40n }),
      [],
      true,
    )!,
  );
  assert.equal(missingFd, 1n);
  assert.ok(HIGH_START > 0);
});

test('SET_STATUS 0 and RESET_DEVICE drop GPU state; GET_STATUS echoes', () => {
  const bench = new GpuBench();
  bench.send(Request.SET_STATUS, u64Payload(0xfn));
  assert.equal(parseU64(bench.send(Request.GET_STATUS)!), 0xfn);
  bench.command(encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 32, 32]));
  bench.send(Request.SET_STATUS, u64Payload(0n));
  assert.deepEqual(bench.eventsNamed('resourceDestroyed'), [[1]]);
  assert.equal(bench.device.gpu.resourceIds().length, 0);
  bench.command(encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 32, 32]));
  const fdsBefore = bench.fds.files.size;
  bench.send(Request.RESET_DEVICE);
  assert.equal(bench.fds.files.size, fdsBefore - 4, 'two kick and two call fds closed');
  assert.equal(bench.device.gpu.resourceIds().length, 0);
  assert.equal(bench.device.features, 0n);
});

test('GPU_SET_SOCKET hands the fd over; the processing gate holds queues until opened', () => {
  // The gate is open while the harness sets the rings up, then closed.
  let gateOpen = true;
  const taken: number[] = [];
  const bench = new GpuBench({
    onGpuSocket: (fd: number) => taken.push(fd),
    canProcess: () => gateOpen,
  });
  gateOpen = false;
  const device = bench.device;
  const socketFd = bench.fds.eventfd();
  bench.send(Request.GPU_SET_SOCKET, undefined, [socketFd]);
  assert.deepEqual(taken, [socketFd]);
  const req = bench.write(encodeRequest(Cmd.GET_DISPLAY_INFO, []));
  const resp = bench.alloc.take(408);
  bench.control.addChain([
    { gpa: req, length: 24, write: false },
    { gpa: resp, length: 408, write: true },
  ]);
  bench.kickQueue(0);
  assert.equal(bench.control.takeUsed().length, 0, 'held');
  gateOpen = true;
  device.kickAll();
  assert.equal(bench.control.takeUsed().length, 1);
});

test('guest-caused warnings thin out after the limit; errors and info always pass', () => {
  const bench = new GpuBench({ warnLimit: 5 });
  for (let i = 0; i < 2010; i++) bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [99, 0]));
  const warnings = bench.logs.filter((l) => l.level === 'warn');
  assert.equal(warnings.length, 5 + 2, 'five, then one per thousand');
  assert.match(warnings.at(-1)!.message, /warnings suppressed so far/);
  assert.equal(bench.device.counters.warningsSuppressed, 2010 - 7);
});

test('a listener that ends the session mid-command does not crash the back-end', () => {
  const bench = new GpuBench();
  bench.command(encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 16, 16]));
  bench.emitter.on('resourceDestroyed', () => bench.device.dispose());
  const req = bench.write(encodeRequest(Cmd.RESOURCE_UNREF, [1, 0]));
  const resp = bench.alloc.take(24);
  bench.control.addChain([
    { gpa: req, length: 32, write: false },
    { gpa: resp, length: 24, write: true },
  ]);
  assert.doesNotThrow(() => bench.kickQueue(0));
  assert.equal(bench.fds.mappings.size, 0, 'memory released');
  assert.ok(!bench.logs.some((l) => l.level === 'error'), 'no internal error');
});
