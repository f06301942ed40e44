import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DmabufParams,
  ParamsError,
  ParamsFlags,
  type CreateResult,
  type ParamsFdOps,
} from '../../examples/compositor/dmabuf/params.js';
import {
  Fourcc,
  FormatModifierSet,
  Modifier,
  defaultDmabufFormats,
  fourcc,
  fourccName,
} from '../../examples/compositor/dmabuf/formats.js';
import {
  CompiledFeedback,
  FORMAT_TABLE_ENTRY_SIZE,
  encodeDevice,
  encodeFormatTable,
  type FeedbackFdOps,
} from '../../examples/compositor/dmabuf/feedback.js';

/** Fake fds: sizes by number, and a record of closes (each fd must close exactly once). */
class FakeFds implements ParamsFdOps {
  readonly sizes = new Map<number, number>();
  readonly closed: number[] = [];
  private next = 100;

  open(size: number): number {
    const fd = this.next++;
    this.sizes.set(fd, size);
    return fd;
  }
  fdSize(fd: number): number {
    const size = this.sizes.get(fd);
    if (size === undefined) throw Object.assign(new Error('EBADF'), { code: 'EBADF' });
    return size;
  }
  close(fd: number): void {
    assert.ok(!this.closed.includes(fd), `fd ${fd} closed twice`);
    this.closed.push(fd);
  }
}

const LINEAR_HI = 0;
const LINEAR_LO = 0;
const W = 64;
const H = 32;

function setup() {
  const fds = new FakeFds();
  const params = new DmabufParams(defaultDmabufFormats(), fds);
  return { fds, params };
}

function expectFatal(result: CreateResult, code: number): void {
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.fatal, `expected fatal error ${code}`);
  if (!result.ok && result.fatal) assert.equal(result.code, code, result.message);
}

test('fourcc codes match drm_fourcc.h', () => {
  assert.equal(Fourcc.XRGB8888, 0x34325258);
  assert.equal(Fourcc.ARGB8888, 0x34325241);
  assert.equal(Fourcc.NV12, 0x3231564e);
  assert.equal(Fourcc.RGB565, 0x36314752);
  assert.equal(fourccName(fourcc('AB24')), 'AB24');
});

test('a valid single-plane import hands its fd to the attributes', () => {
  const { fds, params } = setup();
  const fd = fds.open(W * 4 * H);
  assert.deepEqual(params.add(fd, 0, 0, W * 4, LINEAR_HI, LINEAR_LO), { ok: true });
  const result = params.create(W, H, Fourcc.XRGB8888, ParamsFlags.Y_INVERT);
  assert.ok(result.ok);
  assert.deepEqual(result.attributes.planes, [{ fd, offset: 0, stride: W * 4 }]);
  assert.equal(result.attributes.modifier, 0n);
  assert.equal(result.attributes.flags, ParamsFlags.Y_INVERT);
  params.destroy();
  assert.deepEqual(fds.closed, [], 'the buffer owns the fd now');
});

test('ALREADY_USED: create twice, add after create', () => {
  const { fds, params } = setup();
  params.add(fds.open(W * 4 * H), 0, 0, W * 4, 0, 0);
  assert.ok(params.create(W, H, Fourcc.XRGB8888, 0).ok);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.ALREADY_USED);
  const late = fds.open(100);
  const added = params.add(late, 0, 0, 4, 0, 0);
  assert.equal(added.ok, false);
  assert.equal(!added.ok && added.code, ParamsError.ALREADY_USED);
  assert.ok(fds.closed.includes(late), 'a rejected fd is closed');
});

test('ALREADY_USED also after a failed create', () => {
  const { fds, params } = setup();
  params.add(fds.open(16), 0, 0, W * 4, 0, 0);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.OUT_OF_BOUNDS);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.ALREADY_USED);
  params.destroy();
  assert.equal(fds.closed.length, 1);
});

test('PLANE_IDX: index 4 and above', () => {
  for (const index of [4, 5, 0xffffffff]) {
    const { fds, params } = setup();
    const fd = fds.open(1000);
    const result = params.add(fd, index, 0, 4, 0, 0);
    assert.equal(!result.ok && result.code, ParamsError.PLANE_IDX);
    assert.deepEqual(fds.closed, [fd]);
  }
  const { fds, params } = setup();
  assert.ok(params.add(fds.open(1000), 3, 0, 4, 0, 0).ok, 'index 3 is fine');
});

test('PLANE_SET: the same plane twice', () => {
  const { fds, params } = setup();
  const first = fds.open(1000);
  const second = fds.open(1000);
  assert.ok(params.add(first, 0, 0, 4, 0, 0).ok);
  const result = params.add(second, 0, 0, 4, 0, 0);
  assert.equal(!result.ok && result.code, ParamsError.PLANE_SET);
  assert.deepEqual(fds.closed, [second]);
  params.destroy();
  assert.deepEqual(fds.closed, [second, first]);
});

test('modifier differing between planes is INVALID_FORMAT', () => {
  const { fds, params } = setup();
  assert.ok(params.add(fds.open(W * H * 2), 0, 0, W, 0, 0).ok);
  const result = params.add(fds.open(W * H), 1, 0, W, 0x00ffffff, 0xffffffff);
  assert.equal(!result.ok && result.code, ParamsError.INVALID_FORMAT);
});

test('INCOMPLETE: no planes, a gap, too few and too many planes for the fourcc', () => {
  let { fds, params } = setup();
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.INCOMPLETE);

  ({ fds, params } = setup());
  params.add(fds.open(W * H * 4), 0, 0, W * 4, 0, 0);
  params.add(fds.open(W * H * 4), 2, 0, W * 4, 0, 0);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.INCOMPLETE);

  ({ fds, params } = setup());
  params.add(fds.open(W * H * 4), 1, 0, W * 4, 0, 0);
  expectFatal(params.create(W, H, Fourcc.NV12, 0), ParamsError.INCOMPLETE);

  ({ fds, params } = setup());
  params.add(fds.open(W * H), 0, 0, W, 0, 0);
  expectFatal(params.create(W, H, Fourcc.NV12, 0), ParamsError.INCOMPLETE);

  ({ fds, params } = setup());
  params.add(fds.open(W * H * 4), 0, 0, W * 4, 0, 0);
  params.add(fds.open(W * H * 4), 1, 0, W * 4, 0, 0);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.INCOMPLETE);
});

test('NV12 with two planes validates each plane at its own size', () => {
  const { fds, params } = setup();
  params.add(fds.open(W * H), 0, 0, W, 0, 0);
  params.add(fds.open(W * (H / 2)), 1, 0, W, 0, 0);
  const result = params.create(W, H, Fourcc.NV12, 0);
  assert.ok(result.ok, result.ok ? '' : result.message);
  assert.equal(result.attributes.planes.length, 2);
});

test('INVALID_FORMAT: unknown fourcc, or a pair that was not advertised', () => {
  let { fds, params } = setup();
  params.add(fds.open(W * H * 4), 0, 0, W * 4, 0, 0);
  expectFatal(params.create(W, H, fourcc('YUYV'), 0), ParamsError.INVALID_FORMAT);

  // I915_FORMAT_MOD_X_TILED: a real modifier this compositor never advertises.
  ({ fds, params } = setup());
  params.add(fds.open(W * H * 4), 0, 0, W * 4, 0x01000000, 0x00000001);
  expectFatal(params.create(W, H, Fourcc.XRGB8888, 0), ParamsError.INVALID_FORMAT);

  const onlyLinear = new FormatModifierSet().add(Fourcc.XRGB8888, Modifier.LINEAR);
  const fakes = new FakeFds();
  const strict = new DmabufParams(onlyLinear, fakes);
  strict.add(fakes.open(W * H * 4), 0, 0, W * 4, 0, 0);
  expectFatal(strict.create(W, H, Fourcc.ARGB8888, 0), ParamsError.INVALID_FORMAT);
});

test('INVALID_DIMENSIONS: zero and negative sizes', () => {
  for (const [width, height] of [
    [0, H],
    [W, 0],
    [-1, H],
    [W, -2147483648],
  ]) {
    const { fds, params } = setup();
    params.add(fds.open(W * H * 4), 0, 0, W * 4, 0, 0);
    expectFatal(params.create(width, height, Fourcc.XRGB8888, 0), ParamsError.INVALID_DIMENSIONS);
  }
});

test('OUT_OF_BOUNDS: offset + stride * height past the fd, computed without overflow', () => {
  const size = W * 4 * H;
  const cases: [string, number, number, number, number][] = [
    ['one byte short', size - 1, 0, W * 4, H],
    ['offset pushes it past', size, 4, W * 4, H],
    ['stride below a row', size, 0, W * 4 - 1, H],
    // 0xffffffff * 0x7fffffff wraps in 32 bits to a small number; BigInt catches it.
    ['32-bit wrap of stride * height', size, 0, 0xffffffff, 0x7fffffff],
    ['offset + stride * height > 2^32', size, 0xffff0000, W * 4, H],
  ];
  for (const [name, fdBytes, offset, stride, height] of cases) {
    const { fds, params } = setup();
    params.add(fds.open(fdBytes), 0, offset, stride, 0, 0);
    const result = params.create(W, height, Fourcc.XRGB8888, 0);
    assert.ok(!result.ok && result.fatal && result.code === ParamsError.OUT_OF_BOUNDS, name);
  }
  const { fds, params } = setup();
  params.add(fds.open(size + 4), 0, 4, W * 4, 0, 0);
  assert.ok(params.create(W, H, Fourcc.XRGB8888, 0).ok, 'exact fit with an offset is fine');
});

test('unknown and interlaced flags fail the import without a fatal error', () => {
  for (const flags of [8, 0x80000000, ParamsFlags.INTERLACED]) {
    const { fds, params } = setup();
    params.add(fds.open(W * H * 4), 0, 0, W * 4, 0, 0);
    const result = params.create(W, H, Fourcc.XRGB8888, flags);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.fatal, false);
  }
});

test('an fd without a size is an import failure, not a crash', () => {
  const { fds, params } = setup();
  const fd = fds.open(0);
  fds.sizes.delete(fd);
  params.add(fd, 0, 0, W * 4, 0, 0);
  const result = params.create(W, H, Fourcc.XRGB8888, 0);
  assert.ok(!result.ok && !result.fatal);
});

test('format table: 16-byte entries of u32 format, u32 padding, u64 modifier', () => {
  const formats = defaultDmabufFormats();
  const table = encodeFormatTable(formats);
  assert.equal(table.byteLength, formats.entries().length * FORMAT_TABLE_ENTRY_SIZE);
  const view = new DataView(table.buffer);
  formats.entries().forEach(({ format, modifier }, index) => {
    assert.equal(view.getUint32(index * 16, true), format);
    assert.equal(view.getUint32(index * 16 + 4, true), 0);
    assert.equal(view.getBigUint64(index * 16 + 8, true), modifier);
  });
  assert.ok(formats.has(Fourcc.XRGB8888, Modifier.LINEAR));
  assert.ok(formats.has(Fourcc.NV12, Modifier.INVALID));
  assert.deepEqual([...encodeDevice(0xe280n)], [0x80, 0xe2, 0, 0, 0, 0, 0, 0]);
});

test('compiled feedback seals its table against shrink, grow, write and seal changes', () => {
  const calls: string[] = [];
  let contents = new Uint8Array(0);
  const ops: FeedbackFdOps = {
    memfdCreate: (_name, sealing) => (calls.push(`memfd ${sealing}`), 7),
    ftruncate: (_fd, size) => {
      contents = new Uint8Array(size);
      calls.push(`ftruncate ${size}`);
    },
    pwrite: (_fd, source, position) => (contents.set(source, position), source.byteLength),
    addSeals: (_fd, seals) => void calls.push(`seals ${seals}`),
    close: (fd) => void calls.push(`close ${fd}`),
  };
  const feedback = new CompiledFeedback(defaultDmabufFormats(), 0n, ops);
  assert.deepEqual(calls, ['memfd true', `ftruncate ${feedback.tableSize}`, 'seals 15']);
  assert.deepEqual(contents, encodeFormatTable(defaultDmabufFormats()));
  assert.equal(feedback.tranches.length, 1);
  assert.equal(
    feedback.tranches[0].formatIndices.byteLength,
    2 * defaultDmabufFormats().entries().length,
  );
  feedback.destroy();
  feedback.destroy();
  assert.deepEqual(calls.slice(3), ['close 7']);
});
