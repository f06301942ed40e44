import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeConfig,
  encodeMemTable,
  encodeVringAddr,
  encodeMessage,
  encodeReply,
  encodeSingleRegion,
  Flags,
  FrameReader,
  HEADER_SIZE,
  parseConfig,
  parseHeader,
  parseMemTable,
  parseSingleRegion,
  parseVringAddr,
  parseVringFd,
  ProtocolError,
  Request,
  requestName,
  u64Payload,
} from '../../plugin/vhost-user/vhost-user-protocol.js';

function reader() {
  const closed: number[] = [];
  return { reader: new FrameReader((fd) => closed.push(fd)), closed };
}

test('header encode/parse round trip', () => {
  const bytes = encodeMessage(
    Request.SET_FEATURES,
    Flags.VERSION | Flags.NEED_REPLY,
    u64Payload(0x1_0000_0001n),
  );
  assert.equal(bytes.length, HEADER_SIZE + 8);
  assert.deepEqual(parseHeader(bytes), { request: 2, flags: 0x9, size: 8 });
  const reply = encodeReply(Request.GET_FEATURES, u64Payload(5n));
  assert.deepEqual(parseHeader(reply), { request: 1, flags: 0x5, size: 8 });
  assert.equal(requestName(Request.GPU_SET_SOCKET), 'GPU_SET_SOCKET');
  assert.equal(requestName(4242), 'UNKNOWN(4242)');
});

test('FrameReader reassembles byte-by-byte and coalesced streams', () => {
  const messages = [
    encodeMessage(Request.SET_OWNER, Flags.VERSION),
    encodeMessage(Request.SET_FEATURES, Flags.VERSION, u64Payload(7n)),
    encodeMessage(
      Request.GET_CONFIG,
      Flags.VERSION,
      encodeConfig({ offset: 0, size: 16, flags: 0, data: new Uint8Array(16) }),
    ),
  ];
  const stream = new Uint8Array(messages.reduce((n, m) => n + m.length, 0));
  let at = 0;
  for (const m of messages) {
    stream.set(m, at);
    at += m.length;
  }
  const { reader: whole } = reader();
  assert.deepEqual(
    whole.push(stream, []).map((m) => [m.request, m.payload.length]),
    [
      [3, 0],
      [2, 8],
      [24, 28],
    ],
  );
  const { reader: bytewise } = reader();
  const out = [];
  for (const byte of stream) out.push(...bytewise.push(Uint8Array.of(byte), []));
  assert.deepEqual(
    out.map((m) => m.request),
    [3, 2, 24],
  );
  assert.ok(bytewise.idle());
});

test('FrameReader gives fds to the message whose bytes they came with', () => {
  const { reader: r } = reader();
  const table = encodeMessage(Request.SET_MEM_TABLE, Flags.VERSION, encodeMemTable([]));
  assert.equal(r.wanted(), HEADER_SIZE);
  assert.deepEqual(r.push(table.subarray(0, HEADER_SIZE), [11, 12]), []);
  assert.equal(r.wanted(), table.length - HEADER_SIZE);
  const [first] = r.push(table.subarray(HEADER_SIZE), []);
  assert.deepEqual(first!.fds, [11, 12]);
  const [second] = r.push(encodeMessage(Request.SET_OWNER, Flags.VERSION), []);
  assert.deepEqual(second!.fds, []);
});

test('FrameReader refuses bad versions, oversized payloads and fd floods; dispose closes held fds', () => {
  const bad = encodeMessage(Request.SET_OWNER, 0x2);
  assert.throws(() => reader().reader.push(bad, []), ProtocolError);
  const huge = encodeMessage(Request.SET_OWNER, Flags.VERSION);
  new DataView(huge.buffer).setUint32(8, 0xffffffff, true);
  assert.throws(() => reader().reader.push(huge, []), /exceeds/);
  const { reader: r, closed } = reader();
  r.push(encodeMessage(Request.SET_OWNER, Flags.VERSION).subarray(0, 5), [1, 2]);
  assert.throws(
    () =>
      r.push(
        new Uint8Array(0),
        Array.from({ length: 40 }, (_, i) => 100 + i),
      ),
    /fds/,
  );
  r.dispose();
  assert.equal(closed.length, 42);
  const gpu = new FrameReader(() => {}, 4096, false);
  assert.equal(gpu.push(encodeMessage(1, 0x4), []).length, 1, 'vhost-user-gpu has no version bits');
});

test('payload parsers check sizes and bounds', () => {
  const regions = [
    { guestAddr: 0n, size: 0xa0000n, userAddr: 0x7f0000000000n, mmapOffset: 0n },
    { guestAddr: 1n << 20n, size: 1n << 28n, userAddr: 0x7f0000100000n, mmapOffset: 1n << 20n },
  ];
  assert.deepEqual(parseMemTable(encodeMemTable(regions)), regions);
  const tooMany = encodeMemTable([]);
  new DataView(tooMany.buffer).setUint32(0, 9, true);
  assert.throws(() => parseMemTable(tooMany), /regions/);
  const truncated = encodeMemTable(regions).subarray(0, 8 + 32);
  assert.throws(() => parseMemTable(truncated), /need/);
  assert.deepEqual(parseSingleRegion(encodeSingleRegion(regions[1]!)), regions[1]);
  assert.throws(() => parseSingleRegion(new Uint8Array(39)), ProtocolError);

  const addr = new Uint8Array(40);
  const view = new DataView(addr.buffer);
  view.setUint32(0, 1, true);
  view.setBigUint64(8, 0x1000n, true);
  view.setBigUint64(16, 0x3000n, true);
  view.setBigUint64(24, 0x2000n, true);
  assert.deepEqual(parseVringAddr(addr), {
    index: 1,
    flags: 0,
    descUser: 0x1000n,
    usedUser: 0x3000n,
    availUser: 0x2000n,
    logGuest: 0n,
  });
  assert.deepEqual(
    encodeVringAddr({ index: 1, descUser: 0x1000n, usedUser: 0x3000n, availUser: 0x2000n }),
    addr,
    "the front-end's encoding is the bytes written by hand above",
  );
  assert.deepEqual(parseVringFd(u64Payload(0x101n)), { index: 1, noFd: true });
  assert.deepEqual(parseVringFd(u64Payload(0x1n)), { index: 1, noFd: false });

  const config = parseConfig(
    encodeConfig({ offset: 4, size: 8, flags: 1, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }),
  );
  assert.deepEqual(
    [config.offset, config.size, config.flags, [...config.data]],
    [4, 8, 1, [1, 2, 3, 4, 5, 6, 7, 8]],
  );
  const short = encodeConfig({ offset: 0, size: 8, flags: 0, data: new Uint8Array(8) }).subarray(
    0,
    15,
  );
  assert.throws(() => parseConfig(short), ProtocolError);
});
