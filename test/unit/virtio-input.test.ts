import assert from 'node:assert/strict';
import test from 'node:test';
import { headLayout } from '../../plugin/guest-input.js';
import {
  ABS_MAX,
  BTN_LEFT,
  CfgSelect,
  configSpace,
  decodeEvent,
  encodeEvent,
  EV_ABS,
  EV_KEY,
  EV_LED,
  EV_REL,
  EV_REP,
  EV_SYN,
  keyForChar,
  KEY_CODES,
  pixelToAbs,
  REL_WHEEL,
  REL_WHEEL_HI_RES,
} from '../../plugin/virtio-input/evdev.js';
import { InputDeviceModel, type InputCounters } from '../../plugin/virtio-input/input-device.js';
import { VhostUserDevice } from '../../plugin/vhost-user/vhost-user-device.js';
import {
  encodeConfig,
  encodeMemTable,
  Feature,
  parseConfig,
  Request,
  u64Payload,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import {
  Allocator,
  FakeFds,
  message,
  RAM_SIZE,
  ramRegions,
  RingDriver,
  setUpVring,
} from './virtio-gpu-harness.js';

/** A virtio-input device with guest RAM and both rings set up as QEMU does (4 entries). */
class InputBench {
  readonly fds = new FakeFds();
  readonly ram = new Uint8Array(new ArrayBuffer(RAM_SIZE));
  readonly alloc = new Allocator();
  readonly counters: InputCounters = {
    eventsDelivered: 0,
    eventsDropped: 0,
    eventsWithoutDriver: 0,
    statusEvents: 0,
  };
  readonly device: VhostUserDevice<InputDeviceModel>;
  readonly events: RingDriver;
  readonly status: RingDriver;
  readonly kick = [0, 0];
  readonly call = [0, 0];

  constructor(maxHeld?: number) {
    const memfd = this.fds.memfd(this.ram.buffer as ArrayBuffer);
    this.device = new VhostUserDevice({
      io: this.fds,
      log: () => undefined,
      // No slice limit: these tests check each kick's effect synchronously.
      budget: { chainsPerSlice: Number.MAX_SAFE_INTEGER, sliceMs: 1000 },
      createModel: (context) =>
        new InputDeviceModel(
          context,
          { name: 'test input', serial: 'serial-1' },
          this.counters,
          maxHeld,
        ),
    });
    this.events = new RingDriver(this.ram, this.alloc, 4);
    this.status = new RingDriver(this.ram, this.alloc, 4);
    this.alloc.mark();
    this.send(Request.SET_OWNER);
    this.send(Request.SET_PROTOCOL_FEATURES, u64Payload(0xffffn));
    this.send(
      Request.SET_FEATURES,
      u64Payload(Feature.VERSION_1 | Feature.VHOST_USER_F_PROTOCOL_FEATURES),
    );
    const regions = ramRegions();
    this.send(
      Request.SET_MEM_TABLE,
      encodeMemTable(regions),
      regions.map(() => this.fds.dup(memfd)),
    );
    [this.events, this.status].forEach((ring, index) => {
      this.kick[index] = this.fds.eventfd();
      this.call[index] = this.fds.eventfd();
      setUpVring((...args) => this.send(...args), index, ring, 4, {
        call: this.fds.dup(this.call[index]!),
        kick: this.fds.dup(this.kick[index]!),
      });
    });
  }

  send(
    request: number,
    payload: Uint8Array = new Uint8Array(0),
    fds: number[] = [],
  ): Uint8Array | null {
    const reply = this.device.handle(message(request, payload, fds));
    return reply ? reply.subarray(12) : null;
  }

  /** Posts `count` 8-byte event buffers as the guest driver does; returns their addresses. */
  post(count: number): number[] {
    const out = [];
    for (let i = 0; i < count; i++) {
      const gpa = this.alloc.take(8, 8);
      this.events.addChain([{ gpa, length: 8, write: true }]);
      out.push(gpa);
    }
    this.fds.kick(this.device.queues[0]!.kickFd!);
    return out;
  }

  /** Reads the events the device returned, reposting each buffer (the guest's refill). */
  drain(): { type: number; code: number; value: number }[] {
    const got = [];
    for (;;) {
      const used = this.events.takeUsed();
      if (used.length === 0) break;
      for (const u of used) {
        assert.equal(u.length, 8);
        got.push(this.bufferEvent(u.id));
      }
      this.alloc.reset();
      this.post(used.length);
    }
    return got;
  }

  private bufferEvent(head: number): { type: number; code: number; value: number } {
    const view = new DataView(this.ram.buffer);
    const gpa = Number(view.getBigUint64(this.events.descGpa + 16 * head, true));
    return decodeEvent(this.ram.subarray(gpa, gpa + 8));
  }

  config(select: number, subsel: number): Uint8Array {
    const data = new Uint8Array([select, subsel]);
    this.send(Request.SET_CONFIG, encodeConfig({ offset: 0, size: 2, flags: 0, data }));
    const reply = this.send(
      Request.GET_CONFIG,
      encodeConfig({ offset: 0, size: 136, flags: 0, data: new Uint8Array(136) }),
    )!;
    const config = parseConfig(reply).data;
    assert.equal(config[0], select);
    assert.equal(config[1], subsel);
    return config.subarray(8, 8 + config[2]!);
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bitSet = (bits: Uint8Array, code: number) =>
  ((bits[code >> 3] ?? 0) & (1 << (code & 7))) !== 0;

test('config space: name, serial, ids, event bits, abs ranges, through GET/SET_CONFIG', () => {
  const bench = new InputBench();
  assert.equal(text(bench.config(CfgSelect.ID_NAME, 0)), 'test input');
  assert.equal(text(bench.config(CfgSelect.ID_SERIAL, 0)), 'serial-1');
  const ids = new DataView(bench.config(CfgSelect.ID_DEVIDS, 0).slice().buffer);
  assert.deepEqual([ids.getUint16(0, true), ids.getUint16(6, true)], [0x06, 1]);
  assert.equal(bench.config(CfgSelect.PROP_BITS, 0).length, 0, 'no INPUT_PROP_DIRECT');
  const keys = bench.config(CfgSelect.EV_BITS, EV_KEY);
  for (const code of [1, 30, 42, 0xff, 0x110, 0x111, 0x112, 0x113, 0x114])
    assert.ok(bitSet(keys, code), `key ${code}`);
  assert.ok(!bitSet(keys, 0x100) && !bitSet(keys, 0x115) && !bitSet(keys, 0));
  assert.equal(keys.length, 35, 'bitmap up to BTN_EXTRA');
  const rel = bench.config(CfgSelect.EV_BITS, EV_REL);
  assert.deepEqual(
    [6, 8, 0xb, 0xc, 0, 1].map((c) => bitSet(rel, c)),
    [true, true, true, true, false, false],
  );
  const abs = bench.config(CfgSelect.EV_BITS, EV_ABS);
  assert.deepEqual([...abs], [0b11]);
  assert.ok(bench.config(CfgSelect.EV_BITS, EV_REP).length > 0, 'EV_REP: kernel autorepeat');
  assert.deepEqual([...bench.config(CfgSelect.EV_BITS, EV_LED)], [0b111]);
  assert.equal(bench.config(CfgSelect.EV_BITS, 0x05).length, 0, 'EV_SW not offered');
  for (const axis of [0, 1]) {
    const info = new DataView(bench.config(CfgSelect.ABS_INFO, axis).slice().buffer);
    assert.deepEqual(
      [0, 4, 8, 12, 16].map((o) => info.getUint32(o, true)),
      [0, ABS_MAX, 0, 0, 0],
    );
  }
  assert.equal(bench.config(CfgSelect.ABS_INFO, 2).length, 0);
  assert.equal(bench.config(0x7f, 0).length, 0, 'unknown select: size 0');
  // A GET_CONFIG slice past the union reads zeros; writes beyond select/subsel are ignored.
  assert.equal(configSpace(1, 0, { name: 'x'.repeat(300), serial: '' })[2], 128, 'name capped');
  assert.equal(bench.send(Request.GET_QUEUE_NUM)![0], 2);
});

test('events: 4-entry ring, held and resumed after the guest refills, exact encoding', () => {
  const bench = new InputBench();
  bench.post(4);
  const model = bench.device.model;
  model.send([{ type: EV_KEY, code: KEY_CODES.KEY_LEFTSHIFT!, value: 1 }]);
  model.send([{ type: EV_KEY, code: KEY_CODES.KEY_A!, value: 1 }]);
  model.send([{ type: EV_KEY, code: KEY_CODES.KEY_A!, value: 0 }]);
  assert.equal(model.heldEvents, 2, 'four delivered, two wait for buffers');
  assert.ok(bench.fds.counter(bench.call[0]!) > 0, 'the guest was notified');
  const events = bench.drain();
  assert.deepEqual(events, [
    { type: EV_KEY, code: 42, value: 1 },
    { type: EV_SYN, code: 0, value: 0 },
    { type: EV_KEY, code: 30, value: 1 },
    { type: EV_SYN, code: 0, value: 0 },
    { type: EV_KEY, code: 30, value: 0 },
    { type: EV_SYN, code: 0, value: 0 },
  ]);
  assert.equal(model.heldEvents, 0);
  assert.equal(bench.counters.eventsDelivered, 6);
  // Without events, posted buffers stay in the ring (nothing used).
  assert.equal(bench.events.takeUsed().length, 0);
  assert.deepEqual(
    [...encodeEvent({ type: EV_REL, code: REL_WHEEL, value: -1 })],
    [2, 0, 8, 0, 0xff, 0xff, 0xff, 0xff],
  );
});

test('held queue: bounded; motion goes first, then presses; releases are never dropped', () => {
  const bench = new InputBench(8);
  const model = bench.device.model;
  const move = (x: number) => model.send([{ type: EV_ABS, code: 0, value: x }]); // 2 events
  model.send([{ type: EV_KEY, code: 30, value: 1 }]);
  for (let i = 0; i < 6; i++) move(i);
  model.send([{ type: EV_KEY, code: 30, value: 0 }]);
  assert.ok(model.heldEvents <= 8);
  bench.post(4);
  const events = bench.drain();
  assert.deepEqual(events, [
    { type: EV_KEY, code: 30, value: 1 },
    { type: EV_SYN, code: 0, value: 0 },
    { type: EV_ABS, code: 0, value: 4 },
    { type: EV_SYN, code: 0, value: 0 },
    { type: EV_ABS, code: 0, value: 5 },
    { type: EV_SYN, code: 0, value: 0 },
    { type: EV_KEY, code: 30, value: 0 },
    { type: EV_SYN, code: 0, value: 0 },
  ]);
  assert.equal(bench.counters.eventsDropped, 8, 'four oldest motions, counted');
  // All releases, more than the bound: none dropped (presses go).
  const again = new InputBench(4);
  for (let k = 0; k < 4; k++) again.device.model.send([{ type: EV_KEY, code: 2 + k, value: 1 }]);
  for (let k = 0; k < 4; k++) again.device.model.send([{ type: EV_KEY, code: 2 + k, value: 0 }]);
  again.post(4);
  const releases = again.drain().filter((e) => e.type === EV_KEY);
  assert.deepEqual(
    releases.filter((e) => e.value === 0).map((e) => e.code),
    [2, 3, 4, 5],
  );
});

test('status queue: LED events consumed and remembered; reset forgets held events', () => {
  const bench = new InputBench();
  const gpa = bench.alloc.take(8, 8);
  bench.ram.set(encodeEvent({ type: EV_LED, code: 1, value: 1 }), gpa);
  bench.status.addChain([{ gpa, length: 8, write: false }]);
  bench.fds.kick(bench.device.queues[1]!.kickFd!);
  assert.deepEqual(bench.status.takeUsed(), [{ id: 0, length: 0 }]);
  assert.equal(bench.device.model.leds.get(1), 1);
  bench.device.model.send([{ type: EV_KEY, code: 30, value: 1 }]);
  bench.send(Request.SET_STATUS, u64Payload(0xfn));
  bench.send(Request.SET_STATUS, u64Payload(0n));
  assert.equal(bench.device.model.heldEvents, 0);
});

test('coordinates: pixel centres survive libinput mapping back; head layout', () => {
  for (const size of [1280, 800, 2560, 1, 7]) {
    for (const px of new Set([0, Math.min(1, size - 1), size >> 1, size - 1])) {
      const abs = pixelToAbs(px, size);
      assert.ok(abs >= 0 && abs <= ABS_MAX);
      assert.equal(Math.floor((abs * size) / (ABS_MAX + 1)), px, `${px} of ${size}`);
    }
  }
  assert.equal(pixelToAbs(-5, 100), pixelToAbs(0, 100));
  assert.equal(pixelToAbs(1e9, 100), pixelToAbs(99, 100));
  assert.equal(pixelToAbs(Number.NaN, 100), 0);
  const heads = [
    { id: 0, x: 0, y: 0, width: 640, height: 480, enabled: true },
    { id: 1, x: 0, y: 0, width: 800, height: 600, enabled: true },
  ];
  assert.deepEqual(headLayout(heads), {
    rects: [
      { id: 0, x: 0, y: 0, width: 640, height: 480 },
      { id: 1, x: 640, y: 0, width: 800, height: 600 },
    ],
    width: 1440,
    height: 600,
  });
  const placed = [
    { id: 0, x: 0, y: 600, width: 640, height: 480, enabled: true },
    { id: 1, x: 0, y: 0, width: 800, height: 600, enabled: true },
    { id: 2, x: 0, y: 0, width: 800, height: 600, enabled: false },
  ];
  assert.deepEqual(headLayout(placed).height, 1080);
  assert.equal(headLayout(placed).width, 800);
});

test('type TEXT: characters to keys on a US layout', () => {
  assert.deepEqual(keyForChar('a'), { code: 30, shift: false });
  assert.deepEqual(keyForChar('A'), { code: 30, shift: true });
  assert.deepEqual(keyForChar('!'), { code: 2, shift: true });
  assert.deepEqual(keyForChar('/'), { code: 53, shift: false });
  assert.deepEqual(keyForChar('\n'), { code: 28, shift: false });
  assert.equal(keyForChar('é'), null);
  assert.equal(BTN_LEFT, 0x110);
  assert.equal(REL_WHEEL_HI_RES, 0x0b);
});
