import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Cmd,
  DISPLAY_INFO_SIZE,
  encodeRequest,
  HDR_SIZE,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { QueueScheduler } from '../../plugin/vhost-user/scheduler.js';
import { GuestMemory } from '../../plugin/vhost-user/guest-memory.js';
import { SplitVirtqueue } from '../../plugin/vhost-user/virtqueue.js';
import {
  Allocator,
  FakeFds,
  GpuBench,
  RingDriver,
  ramRegions,
  RAM_SIZE,
  USER_BASE,
  responseType,
} from './virtio-gpu-harness.js';

const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;

/** A bare queue over fresh guest RAM (no device), for walking chains directly. */
function bareQueue(size = 8, indirect = true) {
  const fds = new FakeFds();
  const buffer = new ArrayBuffer(RAM_SIZE);
  const ram = new Uint8Array(buffer);
  const memfd = fds.memfd(buffer);
  const memory = new GuestMemory(fds, (fd) => fds.close(fd));
  for (const region of ramRegions()) memory.add(region, fds.dup(memfd));
  const alloc = new Allocator();
  const driver = new RingDriver(ram, alloc, size);
  alloc.mark();
  const vq = new SplitVirtqueue(0);
  vq.size = size;
  vq.descUser = USER_BASE + driver.descGpa;
  vq.availUser = USER_BASE + driver.availGpa;
  vq.usedUser = USER_BASE + driver.usedGpa;
  vq.indirect = indirect;
  assert.equal(vq.resolve(memory), null);
  return { memory, driver, vq, alloc };
}

test('a direct chain: readable then writable views into guest memory', () => {
  const { memory, driver, vq, alloc } = bareQueue();
  const a = alloc.take(100);
  const b = alloc.take(50);
  driver.ram.fill(7, a, a + 100);
  driver.addChain([
    { gpa: a, length: 100, write: false },
    { gpa: b, length: 50, write: true },
  ]);
  const result = vq.pop(memory);
  assert.equal(result.kind, 'chain');
  if (result.kind !== 'chain') return;
  assert.equal(result.chain.readableLength, 100);
  assert.equal(result.chain.writableLength, 50);
  assert.equal(result.chain.readable[0]![99], 7);
  result.chain.writable[0]!.fill(9);
  assert.equal(driver.ram[b + 49], 9, 'writable view aliases guest memory');
  vq.push(result.chain.head, 50);
  assert.deepEqual(driver.takeUsed(), [{ id: result.chain.head, length: 50 }]);
  assert.equal(vq.pop(memory).kind, 'empty');
});

test('malformed chains are "bad" (head returned), never thrown', () => {
  const cases: [string, (d: RingDriver, gpa: number) => void, string][] = [
    [
      'loop',
      (d, gpa) => {
        d.writeDesc(0, gpa, 16, NEXT, 1);
        d.writeDesc(1, gpa, 16, NEXT, 0);
      },
      'longer than the queue',
    ],
    ['next out of table', (d, gpa) => d.writeDesc(0, gpa, 16, NEXT, 200), 'outside a table'],
    ['address beyond 2^53', (d) => d.writeDesc(0, 1n << 60n, 16, 0, 0), 'beyond guest memory'],
    [
      'address wrapping u64',
      (d) => d.writeDesc(0, 0xffff_ffff_ffff_fff0n, 0x20, 0, 0),
      'beyond guest memory',
    ],
    [
      'length past the end of RAM',
      (d) => d.writeDesc(0, RAM_SIZE - 8, 16, 0, 0),
      'outside guest memory',
    ],
    ['in the hole', (d) => d.writeDesc(0, 0xb0000, 16, 0, 0), 'outside guest memory'],
    [
      'readable after writable',
      (d, gpa) => {
        d.writeDesc(0, gpa, 16, WRITE | NEXT, 1);
        d.writeDesc(1, gpa, 16, 0, 0);
      },
      'readable descriptor after',
    ],
    ['indirect with next', (d, gpa) => d.writeDesc(0, gpa, 32, INDIRECT | NEXT, 1), 'with NEXT'],
    [
      'indirect length not a multiple of 16',
      (d, gpa) => d.writeDesc(0, gpa, 24, INDIRECT, 0),
      'indirect table length',
    ],
    ['indirect empty', (d, gpa) => d.writeDesc(0, gpa, 0, INDIRECT, 0), 'indirect table length'],
    [
      'indirect table outside memory',
      (d) => d.writeDesc(0, RAM_SIZE - 16, 32, INDIRECT, 0),
      'indirect table outside',
    ],
    [
      'indirect not at head',
      (d, gpa) => {
        d.writeDesc(0, gpa, 16, NEXT, 1);
        d.writeDesc(1, gpa, 32, INDIRECT, 0);
      },
      'not at the head',
    ],
    [
      'nested indirect',
      (d, gpa) => {
        d.writeDesc(0, gpa, 16, 0, 0, gpa); // table entry 0 at gpa: itself indirect
        d.writeDesc(0, gpa, 16, INDIRECT, 0, gpa);
        d.writeDesc(0, gpa, 16, INDIRECT, 0);
      },
      'inside an indirect table',
    ],
    [
      'indirect table loop',
      (d, gpa) => {
        d.writeDesc(0, gpa + 64, 8, NEXT, 1, gpa);
        d.writeDesc(1, gpa + 64, 8, NEXT, 0, gpa);
        d.writeDesc(0, gpa, 32, INDIRECT, 0);
      },
      'longer than the queue',
    ],
  ];
  for (const [what, build, reason] of cases) {
    const { memory, driver, vq, alloc } = bareQueue();
    const gpa = alloc.take(4096, 4096);
    driver.claim(2);
    build(driver, gpa);
    driver.publish(0);
    const result = vq.pop(memory);
    assert.equal(result.kind, 'bad', what);
    if (result.kind === 'bad') {
      assert.equal(result.head, 0, what);
      assert.match(result.reason, new RegExp(reason), what);
    }
  }
});

test('indirect descriptors are refused without the feature', () => {
  const { memory, driver, vq, alloc } = bareQueue(8, false);
  const gpa = alloc.take(64);
  driver.addIndirect([{ gpa, length: 8, write: false }]);
  const result = vq.pop(memory);
  assert.equal(result.kind, 'bad');
});

test('a ring whose avail index jumps or names a bad head is broken', () => {
  {
    const { memory, driver, vq } = bareQueue();
    new DataView(driver.ram.buffer).setUint16(driver.availGpa + 2, 9, true);
    assert.equal(vq.pop(memory).kind, 'broken');
    assert.equal(vq.pop(memory).kind, 'broken', 'stays broken until SET_VRING_BASE');
  }
  {
    const { memory, driver, vq } = bareQueue();
    driver.publish(8);
    const result = vq.pop(memory);
    assert.equal(result.kind, 'broken');
  }
});

test('ring placement is validated: alignment, size, memory table', () => {
  const { memory, vq } = bareQueue();
  vq.invalidate();
  vq.descUser! += 8;
  assert.match(vq.resolve(memory)!, /misaligned/);
  vq.descUser! -= 8;
  vq.size = 6;
  assert.match(vq.resolve(memory)!, /queue size/);
  vq.size = 8;
  vq.usedUser = USER_BASE + RAM_SIZE - 16;
  assert.match(vq.resolve(memory)!, /outside the memory table/);
  vq.usedUser = 2 ** 60;
  assert.match(vq.resolve(memory)!, /outside the memory table/);
});

test('EVENT_IDX: avail_event follows consumption, used_event suppresses interrupts', () => {
  const bench = new GpuBench({ eventIdx: true });
  const callFd = bench.device.queues[0]!.callFd!;
  const before = bench.fds.counter(callFd);
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  assert.equal(bench.control.availEvent(), 1, 'avail_event = next index we will read');
  assert.equal(bench.fds.counter(callFd), before + 1, 'first completion always signals');

  // used_event = 0: the guest wanted an interrupt when used idx passed 0; it is already at 1.
  bench.control.setUsedEvent(0);
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  assert.equal(bench.fds.counter(callFd), before + 1, 'suppressed: used_event already passed');
  // used_event = current used idx: signal when this completion moves past it.
  bench.control.setUsedEvent(bench.control.usedIdx());
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  assert.equal(bench.fds.counter(callFd), before + 2);
  assert.equal(bench.control.availEvent(), 3);
});

test('without EVENT_IDX the NO_INTERRUPT flag suppresses interrupts', () => {
  const bench = new GpuBench({ eventIdx: false });
  const callFd = bench.device.queues[0]!.callFd!;
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  assert.equal(bench.fds.counter(callFd), 1);
  bench.control.setAvailFlags(1);
  bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
  assert.equal(bench.fds.counter(callFd), 1);
  assert.equal(bench.control.availEvent(), 0, 'avail_event untouched');
});

test('a batch of chains is processed in one kick with one interrupt', () => {
  const bench = new GpuBench();
  const callFd = bench.device.queues[0]!.callFd!;
  const responses = [];
  for (let i = 1; i <= 20; i++) {
    const req = bench.write(encodeRequest(Cmd.RESOURCE_CREATE_2D, [i, 2, 8, 8]));
    const resp = bench.alloc.take(HDR_SIZE);
    responses.push(resp);
    bench.control.addChain([
      { gpa: req, length: 40, write: false },
      { gpa: resp, length: HDR_SIZE, write: true },
    ]);
  }
  bench.kickQueue(0);
  const used = bench.control.takeUsed();
  assert.equal(used.length, 20);
  for (const resp of responses)
    assert.equal(new DataView(bench.ramBuffer).getUint32(resp, true), Resp.OK_NODATA);
  assert.equal(bench.fds.counter(callFd), 1);
  assert.equal(bench.device.gpu.resourceIds().length, 20);
});

test('bad chains in the device are returned with length 0 and counted as drops', () => {
  const bench = new GpuBench();
  const [index] = bench.control.claim(1);
  bench.control.writeDesc(index!, 1n << 55n, 24, 0, 0);
  bench.control.publish(index!);
  bench.kickQueue(0);
  assert.deepEqual(bench.control.takeUsed(), [{ id: index, length: 0 }]);
  assert.equal(bench.device.counters.dropped, 1);
  assert.ok(bench.logs.some((l) => l.message.includes('dropped chain')));
  assert.equal(
    responseType(bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408)),
    Resp.OK_DISPLAY_INFO,
    'queue still works',
  );
});

test('a queue that never empties runs in bounded slices, round-robin with another guest', () => {
  // A scheduler whose rounds the test runs by hand (in the product: one setImmediate each).
  const rounds: (() => void)[] = [];
  const scheduler = new QueueScheduler((run) => {
    rounds.push(run);
    return undefined as unknown as NodeJS.Immediate;
  });
  const budget = { chainsPerSlice: 8, sliceMs: 1000 };
  const hostile = new GpuBench({ scheduler, budget, queueSize: 64 });
  const good = new GpuBench({ scheduler, budget });
  const flushRequest = (bench: GpuBench) => {
    const req = bench.write(encodeRequest(Cmd.GET_DISPLAY_INFO, []));
    const resp = bench.alloc.take(DISPLAY_INFO_SIZE);
    bench.control.addChain([
      { gpa: req, length: HDR_SIZE, write: false },
      { gpa: resp, length: DISPLAY_INFO_SIZE, write: true },
    ]);
  };
  // The hostile guest fills its ring (64 chains) and refills what is used, like a vCPU would.
  const refill = () => {
    hostile.control.takeUsed();
    while (hostile.control.freeCount > 0) flushRequest(hostile);
  };
  refill();
  hostile.kickQueue(0);
  assert.equal(hostile.device.counters.chains, 8, 'one slice on the kick, then it yields');
  assert.equal(rounds.length, 1, 'the rest waits for a round of the event loop');
  // Kicks while it waits run nothing more.
  hostile.kickQueue(0);
  assert.equal(hostile.device.counters.chains, 8);
  // The good guest's command runs at once, not behind the 56 chains left.
  flushRequest(good);
  good.kickQueue(0);
  assert.equal(good.control.takeUsed().length, 1);
  for (let round = 0; round < 20; round++) {
    refill();
    rounds.shift()!();
    assert.equal(hostile.device.counters.chains, 8 * (round + 2), 'one slice per round');
    flushRequest(good);
    good.kickQueue(0);
    assert.equal(good.control.takeUsed().length, 1, 'the good guest is served every round');
  }
  assert.equal(rounds.length, 1, 'the hostile queue is still scheduled');
  assert.ok(hostile.device.yields >= 21);
  hostile.device.dispose();
  rounds.shift()!(); // a disposed device's queue leaves the scheduler
  assert.equal(rounds.length, 0);
  assert.equal(scheduler.isWaiting(hostile.device.queues[0]!.slot), false);
});
