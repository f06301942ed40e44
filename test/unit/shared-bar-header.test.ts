// The shared BAR header parser against good and hostile headers, plus a seeded fuzz: every
// accepted header must describe a framebuffer that lies inside the BAR, and nothing throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DrmFormat } from '../../plugin/common/formats.js';
import {
  BAR_HEADER_SIZE_V1,
  Field,
  HOST_AREA_OFFSET,
  MAX_DAMAGE_RECTS,
  encodeHostRequest,
  parseBarHeader,
  readHostRequest,
  writeBarHeader,
  type HeaderFields,
  type HeaderResult,
} from '../../plugin/sources/shared-bar/header.js';

const BAR = 64 * 1024 * 1024;

const good: HeaderFields = {
  fourcc: DrmFormat.XRGB8888,
  width: 1280,
  height: 800,
  stride: 5120,
  offset: 4096,
  sequence: 2,
};

function headerOf(fields: Partial<HeaderFields>): DataView {
  const view = new DataView(new ArrayBuffer(4096));
  writeBarHeader(view, { ...good, ...fields });
  return view;
}

function problemsOf(result: HeaderResult): string[] {
  assert.equal(result.status, 'invalid', `expected a refusal, got ${JSON.stringify(result)}`);
  return result.status === 'invalid' ? result.problems : [];
}

test('a good header gives the layout, page-rounded span and full damage', () => {
  const result = parseBarHeader(headerOf({}), BAR);
  assert.equal(result.status, 'ok');
  if (result.status !== 'ok') return;
  assert.deepEqual(result.header.layout, {
    fourcc: DrmFormat.XRGB8888,
    modifier: 0n,
    width: 1280,
    height: 800,
    stride: 5120,
    offset: 4096,
    span: 5120 * 800,
  });
  assert.deepEqual(result.header.damage, []);
  assert.equal(result.header.sequence, 2);
  assert.equal(result.header.cursor, null);
  // A span that is not whole pages is rounded up, and still inside the BAR.
  const odd = parseBarHeader(headerOf({ width: 100, height: 3, stride: 400 }), BAR);
  assert.equal(odd.status === 'ok' && odd.header.layout.span, 4096);
});

test('no magic yet is "empty"; an odd sequence is "writing"', () => {
  assert.deepEqual(parseBarHeader(new DataView(new ArrayBuffer(4096)), BAR), { status: 'empty' });
  assert.deepEqual(parseBarHeader(headerOf({ sequence: 7 }), BAR), {
    status: 'writing',
    sequence: 7,
  });
});

test('version 2 carries the request acknowledgement; version 1 still parses, without one', () => {
  const v2 = parseBarHeader(headerOf({ requestAck: 6 }), BAR);
  assert.equal(v2.status === 'ok' && v2.header.version, 2);
  assert.equal(v2.status === 'ok' && v2.header.requestAck, 6);
  // A version-1 writer never wrote the field (reserved, 0); whatever is there is not an ack.
  const v1 = parseBarHeader(headerOf({ version: 1, requestAck: 6 }), BAR);
  assert.equal(v1.status, 'ok');
  if (v1.status !== 'ok') return;
  assert.equal(v1.header.version, 1);
  assert.equal(v1.header.requestAck, null);
  assert.deepEqual(v1.header.layout, (v2 as { header: { layout: unknown } }).header.layout);
  assert.equal(Field.requestAck, 352, 'in what version 1 reserved');
  assert.ok(Field.requestAck + 4 <= BAR_HEADER_SIZE_V1);
});

test('host requests: odd while written, complete when even, in the host area', () => {
  assert.deepEqual(
    [Field.requestSequence, Field.requestWidth, Field.requestHeight],
    [HOST_AREA_OFFSET + 8, HOST_AREA_OFFSET + 12, HOST_AREA_OFFSET + 16],
  );
  const page = new Uint8Array(4096);
  const view = new DataView(page.buffer);
  assert.equal(readHostRequest(view), null, 'sequence 0: no request');
  const { odd, body, done } = encodeHostRequest({ sequence: 4, width: 1024, height: 768 });
  page.set(odd, Field.requestSequence);
  page.set(body, Field.requestWidth);
  assert.equal(readHostRequest(view), null, 'odd: being written');
  page.set(done, Field.requestSequence);
  assert.deepEqual(readHostRequest(view), { sequence: 4, width: 1024, height: 768 });
  assert.deepEqual([...odd], [3, 0, 0, 0]);
  assert.deepEqual([...body], [0, 4, 0, 0, 0, 3, 0, 0]);
  assert.throws(() => encodeHostRequest({ sequence: 3, width: 1, height: 1 }), /not even/);
  assert.throws(() => encodeHostRequest({ sequence: 0, width: 1, height: 1 }), /nonzero/);
  assert.equal(readHostRequest(new DataView(new ArrayBuffer(HOST_AREA_OFFSET))), null);
});

const hostile: [string, Partial<HeaderFields>, RegExp][] = [
  ['bad magic', { magic: 0x12345678 }, /bad magic 0x12345678/],
  ['future version', { version: 3 }, /unsupported header version 3/],
  ['version 0', { version: 0, magic: 0x52424647 }, /unsupported header version 0/],
  ['header size too small', { headerSize: 16 }, /header size 16 is outside/],
  ['unknown fourcc', { fourcc: 0x20202020 }, /unknown fourcc 0x20202020/],
  ['tiled modifier', { modifier: 0x0100000000000001n }, /modifier 0x100000000000001 is not LINEAR/],
  ['zero width', { width: 0 }, /width 0 is outside 1\.\.16384/],
  ['zero height', { height: 0 }, /height 0 is outside/],
  ['zero stride', { stride: 0 }, /stride 0 is outside/],
  ['huge width', { width: 0xffffffff }, /width 4294967295 is outside/],
  ['stride below the row', { stride: 1280 * 4 - 4 }, /stride 5116 is below 1280 pixels of 4 bytes/],
  ['unaligned offset', { offset: 4097 }, /offset 4097 is not 4096-byte aligned/],
  ['offset in the header page', { offset: 0 }, /offset 0 overlaps the header page/],
  [
    'framebuffer past the BAR',
    { offset: BAR - 4096 },
    /framebuffer 67104768\+5120x800 ends at 71200768, past the 67108864-byte BAR/,
  ],
  [
    'stride x height past 2^32 (no wrap)',
    { width: 16384, stride: 0x7ffff000, height: 16384 },
    /ends at 35184304984064, past/,
  ],
  ['offset near 2^64 (no wrap)', { offset: 0xfffffffffffff000n }, /ends at 18446744073713643520/],
  ['absurd damage count', { damageCount: 100000 }, /damage count 100000 is above 16/],
  ['damage count just over', { damageCount: MAX_DAMAGE_RECTS + 1 }, /damage count 17 is above/],
];

for (const [name, fields, message] of hostile) {
  test(`hostile header refused with a clear message: ${name}`, () => {
    const problems = problemsOf(parseBarHeader(headerOf(fields), BAR));
    assert.ok(
      problems.some((p) => message.test(p)),
      `${JSON.stringify(problems)} has no ${message}`,
    );
  });
}

test('several problems are reported together', () => {
  const problems = problemsOf(parseBarHeader(headerOf({ width: 0, fourcc: 1, offset: 123 }), BAR));
  assert.equal(problems.length, 3, problems.join('; '));
});

test('a BAR too small for a header and a framebuffer is refused', () => {
  assert.match(problemsOf(parseBarHeader(headerOf({}), 4096))[0]!, /no room past the header/);
  const short = new DataView(new ArrayBuffer(BAR_HEADER_SIZE_V1 - 1));
  assert.match(problemsOf(parseBarHeader(short, BAR))[0]!, /is short/);
});

test('damage rectangles are clipped to the framebuffer; empty ones dropped; no overflow', () => {
  const result = parseBarHeader(
    headerOf({
      damage: [
        { x: 10, y: 20, width: 30, height: 40 },
        { x: 1270, y: 790, width: 100, height: 100 },
        { x: 5000, y: 0, width: 10, height: 10 },
        { x: 0xffffffff, y: 0xffffffff, width: 0xffffffff, height: 0xffffffff },
        { x: 0, y: 0, width: 0, height: 5 },
      ],
    }),
    BAR,
  );
  assert.equal(result.status, 'ok');
  if (result.status !== 'ok') return;
  assert.deepEqual(result.header.damage, [
    { x: 10, y: 20, width: 30, height: 40 },
    { x: 1270, y: 790, width: 10, height: 10 },
  ]);
});

test('cursor: accepted inside the BAR, refused (frame kept) when hostile', () => {
  const cursor = { visible: 1, x: 5, y: 6, hotX: 1, hotY: 2, width: 32, height: 32 };
  const ok = parseBarHeader(headerOf({ cursor: { ...cursor, imageOffset: 8192 } }), BAR);
  assert.equal(ok.status === 'ok' && ok.header.cursor?.imageOffset, 8192);
  const cases: [Partial<typeof cursor> & { imageOffset?: number | bigint }, RegExp][] = [
    [{ imageOffset: BAR - 100 }, /runs past the BAR/],
    [{ imageOffset: 8193 }, /unaligned or in the header/],
    [{ imageOffset: 0 }, /unaligned or in the header/],
    [{ width: 0, imageOffset: 8192 }, /cursor 0x32 is outside/],
    [{ width: 4096, imageOffset: 8192 }, /cursor 4096x32 is outside/],
    [{ hotX: 32, imageOffset: 8192 }, /hotspot 32,2 is outside/],
    [{ visible: 7, imageOffset: 8192 }, /visible flag 7/],
  ];
  for (const [change, message] of cases) {
    const result = parseBarHeader(
      headerOf({ cursor: { ...cursor, ...change } as HeaderFields['cursor'] }),
      BAR,
    );
    assert.equal(result.status, 'ok', 'a bad cursor does not cost the frame');
    if (result.status !== 'ok') continue;
    assert.equal(result.header.cursor, null);
    assert.match(result.header.cursorProblem ?? '', message);
  }
});

/** mulberry32: reproducible randomness. */
function random32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

test('fuzz: 20,000 random and mutated headers never throw; accepted ones fit the BAR', () => {
  const next = random32(0x6b617221);
  const interesting = [0, 1, 2, 3, 4095, 4096, 4097, 0x7fffffff, 0x80000000, 0xffffffff, 16384];
  const bars = [8192, 65536, 1 << 20, BAR, 2 ** 34];
  const counts = { ok: 0, invalid: 0, writing: 0, empty: 0 };
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(1024);
    const view = new DataView(bytes.buffer);
    const barSize = bars[next() % bars.length]!;
    if (i % 4 === 0) {
      for (let j = 0; j < bytes.length; j += 4) view.setUint32(j, next(), true);
    } else {
      writeBarHeader(view, {
        ...good,
        width: 1 + (next() % 2000),
        height: 1 + (next() % 2000),
        stride: (next() % 9000) * (next() % 2 ? 4 : 1),
        offset: (next() % 64) * 4096,
        sequence: (next() % 100) * 2,
        damageCount: next() % 20,
      });
      // Mutate a few words, often with boundary values.
      for (let m = next() % 6; m > 0; m--) {
        const at = (next() % (BAR_HEADER_SIZE_V1 / 4)) * 4;
        const value = next() % 2 ? interesting[next() % interesting.length]! : next();
        view.setUint32(at, value, true);
      }
      if (next() % 3 === 0) view.setUint32(Field.sequence, 0, true);
    }
    let result: HeaderResult;
    try {
      result = parseBarHeader(view, barSize);
    } catch (error) {
      assert.fail(`case ${i} threw: ${(error as Error).message}`);
    }
    counts[result.status]++;
    if (result.status !== 'ok') continue;
    const { layout, damage, cursor } = result.header;
    const end = BigInt(layout.offset) + BigInt(layout.stride) * BigInt(layout.height);
    assert.ok(end <= BigInt(barSize), `case ${i}: framebuffer past the BAR`);
    assert.ok(layout.offset + layout.span <= barSize, `case ${i}: span past the BAR`);
    assert.equal(layout.offset % 4096, 0);
    assert.equal(layout.span % 4096, 0);
    assert.ok(layout.offset >= 4096);
    assert.ok(layout.stride >= layout.width * 2);
    assert.ok(damage.length <= MAX_DAMAGE_RECTS);
    for (const rect of damage) {
      assert.ok(rect.width > 0 && rect.height > 0);
      assert.ok(rect.x + rect.width <= layout.width && rect.y + rect.height <= layout.height);
    }
    if (cursor) {
      assert.ok(cursor.imageOffset + cursor.width * cursor.height * 4 <= barSize);
    }
  }
  assert.ok(counts.ok > 1000 && counts.invalid > 1000, JSON.stringify(counts));
});
