import { test } from 'node:test';
import assert from 'node:assert/strict';
import type {
  CursorUpdate,
  HeadInfo,
  ScanoutInfo,
  SourceResource,
} from '../../plugin/sources/types.js';
import { parseEdid } from '../../plugin/sources/virtio-gpu/edid.js';
import {
  BlobFlag,
  BlobMem,
  Cmd,
  CtrlFlag,
  DISPLAY_INFO_SIZE,
  DrmFormat,
  EDID_RESPONSE_SIZE,
  encodeMemEntries,
  encodeRequest,
  HDR_SIZE,
  Resp,
  VirtioFormat,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { GpuBench, HIGH_START, LOW_END, RAM_SIZE, responseType } from './virtio-gpu-harness.js';

const W = 64;
const H = 32;

function create2d(
  bench: GpuBench,
  id: number,
  width = W,
  height = H,
  format: number = VirtioFormat.B8G8R8X8_UNORM,
) {
  return responseType(
    bench.command(encodeRequest(Cmd.RESOURCE_CREATE_2D, [id, format, width, height])),
  );
}

function attach(
  bench: GpuBench,
  id: number,
  entries: { addr: number | bigint; length: number }[],
  count = entries.length,
) {
  return responseType(
    bench.command(
      encodeRequest(Cmd.RESOURCE_ATTACH_BACKING, [id, count], {}, encodeMemEntries(entries)),
    ),
  );
}

/** Backing of `bytes` in page-sized pieces placed in reverse order (scattered, like a guest). */
function scatteredBacking(bench: GpuBench, bytes: number): { addr: number; length: number }[] {
  const pages = Math.ceil(bytes / 4096);
  const base = bench.alloc.reserve(pages * 4096 * 2);
  const entries = [];
  for (let i = 0; i < pages; i++) {
    const length = Math.min(4096, bytes - i * 4096);
    entries.push({ addr: base + (2 * (pages - 1 - i) + 1) * 4096, length });
  }
  return entries;
}

function setScanout(bench: GpuBench, scanout: number, id: number, rect = [0, 0, W, H]) {
  return responseType(bench.command(encodeRequest(Cmd.SET_SCANOUT, [...rect, scanout, id])));
}

test('GET_DISPLAY_INFO reports the configured heads', () => {
  const bench = new GpuBench({ scanouts: 2, width: 1024, height: 768 });
  const response = bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), DISPLAY_INFO_SIZE);
  assert.equal(response.length, DISPLAY_INFO_SIZE);
  const view = new DataView(response.buffer);
  assert.equal(view.getUint32(0, true), Resp.OK_DISPLAY_INFO);
  for (const head of [0, 1]) {
    const at = HDR_SIZE + 24 * head;
    assert.deepEqual(
      [0, 4, 8, 12, 16].map((o) => view.getUint32(at + o, true)),
      [0, 0, 1024, 768, 1],
    );
  }
  assert.equal(view.getUint32(HDR_SIZE + 24 * 2 + 8, true), 0, 'third head absent');
  assert.equal(bench.call.length, 2);
});

test('GET_EDID returns a valid EDID for the head; bad scanout id is rejected', () => {
  const bench = new GpuBench({ width: 1920, height: 1080 });
  const response = bench.command(encodeRequest(Cmd.GET_EDID, [0, 0]), EDID_RESPONSE_SIZE);
  const view = new DataView(response.buffer);
  assert.equal(view.getUint32(0, true), Resp.OK_EDID);
  assert.equal(view.getUint32(HDR_SIZE, true), 128);
  const edid = parseEdid(response.subarray(HDR_SIZE + 8, HDR_SIZE + 8 + 128));
  assert.deepEqual(edid, { checksumOk: true, width: 1920, height: 1080, name: 'test-0' });
  assert.equal(
    responseType(bench.command(encodeRequest(Cmd.GET_EDID, [1, 0]), EDID_RESPONSE_SIZE)),
    Resp.ERR_INVALID_SCANOUT_ID,
  );
});

test('RESOURCE_CREATE_2D: happy path and every validation', () => {
  const bench = new GpuBench();
  assert.equal(create2d(bench, 1), Resp.OK_NODATA);
  const [created] = bench.eventsNamed('resourceCreated')[0] as [SourceResource];
  assert.equal(created.id, 1);
  assert.equal(created.fourcc, DrmFormat.XRGB8888);
  assert.equal(created.stride, W * 4);
  assert.equal(created.modifier, 0n);
  assert.deepEqual(created.backing, []);
  assert.equal(create2d(bench, 1), Resp.ERR_INVALID_RESOURCE_ID, 'duplicate id');
  assert.equal(create2d(bench, 0), Resp.ERR_INVALID_RESOURCE_ID, 'id 0');
  assert.equal(create2d(bench, 2, W, H, 999), Resp.ERR_INVALID_PARAMETER, 'unknown format');
  assert.equal(create2d(bench, 2, 0, H), Resp.ERR_INVALID_PARAMETER, 'zero width');
  assert.equal(create2d(bench, 2, W, 0), Resp.ERR_INVALID_PARAMETER, 'zero height');
  assert.equal(create2d(bench, 2, 0xffffffff, 0xffffffff), Resp.ERR_INVALID_PARAMETER, 'huge');
  assert.equal(create2d(bench, 2, 16384, 16384), Resp.ERR_OUT_OF_MEMORY, 'too many bytes');
  const short = encodeRequest(Cmd.RESOURCE_CREATE_2D, [3, 2, 10]);
  assert.equal(responseType(bench.command(short)), Resp.ERR_UNSPEC, 'short request');
  assert.equal(bench.eventsNamed('resourceCreated').length, 1);
});

test('format mapping: every virtio format to the DRM fourcc with the same bytes in memory', () => {
  const bench = new GpuBench();
  // Derived from the names, not from a copy of the table: virtio names list bytes in memory
  // order; DRM names list components from the most significant byte of a little-endian word,
  // so the DRM name read backwards is the memory order.
  const drmName = new Map<number, string>(Object.entries(DrmFormat).map(([n, v]) => [v, n]));
  const formats = Object.entries(VirtioFormat);
  assert.equal(formats.length, 8, 'the eight 32-bit formats of the virtio spec');
  formats.forEach(([name, format], i) => {
    assert.equal(create2d(bench, 10 + i, 4, 4, format), Resp.OK_NODATA, name);
    const drm = drmName.get(bench.device.gpu.resource(10 + i)!.fourcc);
    assert.ok(drm, `${name} maps to a known DRM format`);
    const memoryOrder = name.replace(/_UNORM$/, '').replace(/8/g, '');
    assert.equal([...drm.replace(/8888$/, '')].reverse().join(''), memoryOrder, name);
  });
  // The fourcc codes themselves, from drm_fourcc.h: 'X' 'R' '2' '4' little-endian.
  assert.equal(DrmFormat.XRGB8888, 0x34325258);
  assert.equal(DrmFormat.ABGR8888, 0x34324241);
});

test('ATTACH_BACKING translates scattered guest pages to memfd ranges', () => {
  const bench = new GpuBench();
  create2d(bench, 1);
  const entries = scatteredBacking(bench, W * H * 4);
  assert.equal(attach(bench, 1, entries), Resp.OK_NODATA);
  const [res] = bench.eventsNamed('backingChanged')[0] as [SourceResource];
  assert.equal(res.size, W * H * 4);
  assert.equal(res.backing.length, entries.length);
  res.backing.forEach((range, i) => {
    // The high region maps gpa G at memfd offset G (mmap_offset == guest address here).
    assert.equal(range.offset, entries[i]!.addr);
    assert.equal(range.length, entries[i]!.length);
    assert.equal(range.fd, bench.device.memory.regions[1]!.fd);
  });
  assert.equal(attach(bench, 1, entries), Resp.ERR_UNSPEC, 'backing already attached');
  assert.equal(attach(bench, 77, entries), Resp.ERR_INVALID_RESOURCE_ID);
});

test('ATTACH_BACKING merges contiguous pages and rejects ranges outside the table', () => {
  const bench = new GpuBench();
  create2d(bench, 1);
  const base = bench.alloc.reserve(W * H * 4);
  const pages = [];
  for (let at = 0; at < W * H * 4; at += 4096) pages.push({ addr: base + at, length: 4096 });
  assert.equal(attach(bench, 1, pages), Resp.OK_NODATA);
  assert.deepEqual(
    bench.device.gpu.resource(1)!.backing.map((r) => [r.offset, r.length]),
    [[base, W * H * 4]],
  );

  // Large enough for both entries: the size limit (checked first) must not be what refuses them.
  create2d(bench, 2, W, 4 * H);
  const bad: [string, { addr: number | bigint; length: number }][] = [
    ['in the 640K-1M hole', { addr: LOW_END, length: 4096 }],
    ['crossing the end of low RAM', { addr: LOW_END - 4096, length: 8192 }],
    ['past the end of RAM', { addr: RAM_SIZE - 4096, length: 8192 }],
    ['beyond 2^53', { addr: 1n << 60n, length: 4096 }],
    ['address that wraps', { addr: 0xffff_ffff_ffff_f000n, length: 0x2000 }],
  ];
  for (const [what, entry] of bad) {
    assert.equal(
      attach(bench, 2, [{ addr: HIGH_START, length: 4096 }, entry]),
      Resp.ERR_UNSPEC,
      what,
    );
  }
  assert.equal(
    attach(bench, 2, [{ addr: HIGH_START, length: 0 }]),
    Resp.ERR_INVALID_PARAMETER,
    'empty entry',
  );
  assert.equal(attach(bench, 2, [], 0), Resp.ERR_UNSPEC, 'no entries');
  assert.equal(
    attach(bench, 2, [{ addr: HIGH_START, length: 4096 }], 5),
    Resp.ERR_UNSPEC,
    'count beyond request',
  );
  assert.equal(
    attach(bench, 2, [{ addr: HIGH_START, length: 4096 }], 0x1000_0000),
    Resp.ERR_UNSPEC,
    'huge count',
  );
  assert.equal(bench.device.gpu.resource(2)!.backing.length, 0);
});

test('SET_SCANOUT, RESOURCE_FLUSH, TRANSFER_TO_HOST_2D and their errors', () => {
  const bench = new GpuBench({ scanouts: 2 });
  create2d(bench, 1);
  assert.equal(setScanout(bench, 0, 1), Resp.ERR_INVALID_PARAMETER, 'no backing yet');
  attach(bench, 1, scatteredBacking(bench, W * H * 4));
  assert.equal(setScanout(bench, 0, 1), Resp.OK_NODATA);
  const [[head, scanout]] = bench.eventsNamed('scanoutSet') as [[number, ScanoutInfo]];
  assert.equal(head, 0);
  assert.deepEqual(scanout, {
    headId: 0,
    resourceId: 1,
    fourcc: DrmFormat.XRGB8888,
    modifier: 0n,
    width: W,
    height: H,
    stride: W * 4,
    offset: 0,
    rect: { x: 0, y: 0, width: W, height: H },
  });
  assert.equal(setScanout(bench, 0, 1), Resp.OK_NODATA);
  assert.equal(
    bench.eventsNamed('scanoutSet').length,
    1,
    'repeated SET_SCANOUT is not re-announced',
  );
  assert.equal(setScanout(bench, 2, 1), Resp.ERR_INVALID_SCANOUT_ID);
  assert.equal(setScanout(bench, 0xffffffff, 1), Resp.ERR_INVALID_SCANOUT_ID);
  assert.equal(setScanout(bench, 1, 9), Resp.ERR_INVALID_RESOURCE_ID);
  assert.equal(
    setScanout(bench, 1, 1, [1, 0, W, H]),
    Resp.ERR_INVALID_PARAMETER,
    'rect past the right edge',
  );
  assert.equal(
    setScanout(bench, 1, 1, [0xffffffff, 0, 2, 2]),
    Resp.ERR_INVALID_PARAMETER,
    'x overflow',
  );
  assert.equal(setScanout(bench, 1, 1, [0, 0, 0, H]), Resp.ERR_INVALID_PARAMETER, 'empty rect');

  const flush = (rect: number[], id = 1) =>
    responseType(bench.command(encodeRequest(Cmd.RESOURCE_FLUSH, [...rect, id, 0])));
  assert.equal(flush([8, 4, 16, 8]), Resp.OK_NODATA);
  assert.deepEqual(bench.eventsNamed('flush'), [[0, [{ x: 8, y: 4, width: 16, height: 8 }]]]);
  assert.equal(flush([0, 0, W + 1, H]), Resp.ERR_INVALID_PARAMETER);
  assert.equal(flush([0, 0, W, H], 5), Resp.ERR_INVALID_RESOURCE_ID);

  const transfer = (rect: number[], offset: bigint, id = 1) =>
    responseType(
      bench.command(
        encodeRequest(Cmd.TRANSFER_TO_HOST_2D, [
          ...rect,
          Number(offset & 0xffffffffn),
          Number(offset >> 32n),
          id,
          0,
        ]),
      ),
    );
  assert.equal(transfer([0, 0, W, H], 0n), Resp.OK_NODATA);
  assert.equal(transfer([0, 1, W, H - 1], BigInt(W * 4)), Resp.OK_NODATA);
  assert.equal(
    transfer([0, 1, W, H - 1], BigInt(W * 4 * 2)),
    Resp.ERR_INVALID_PARAMETER,
    'past the backing',
  );
  assert.equal(transfer([0, 0, W, H], 1n << 63n), Resp.ERR_INVALID_PARAMETER, 'offset overflow');
  assert.equal(transfer([0, 0, W, H + 1], 0n), Resp.ERR_INVALID_PARAMETER);
  assert.equal(transfer([0, 0, W, H], 0n, 3), Resp.ERR_INVALID_RESOURCE_ID);
  assert.equal(bench.device.gpu.counters.bytesCopied, 0, 'zero-copy path copies nothing');

  assert.equal(setScanout(bench, 0, 0), Resp.OK_NODATA, 'disable');
  assert.deepEqual(bench.eventsNamed('scanoutSet').at(-1), [0, null]);
});

test('DETACH_BACKING and RESOURCE_UNREF tear down scanouts first', () => {
  const bench = new GpuBench();
  create2d(bench, 1);
  attach(bench, 1, scatteredBacking(bench, W * H * 4));
  setScanout(bench, 0, 1);
  const detach = (id: number) =>
    responseType(bench.command(encodeRequest(Cmd.RESOURCE_DETACH_BACKING, [id, 0])));
  const unref = (id: number) =>
    responseType(bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [id, 0])));
  bench.events.length = 0;
  assert.equal(detach(1), Resp.OK_NODATA);
  assert.deepEqual(
    bench.events.map((e) => e.name),
    ['scanoutSet', 'backingChanged'],
  );
  assert.equal(detach(1), Resp.ERR_UNSPEC, 'nothing to detach');
  assert.equal(detach(0), Resp.ERR_INVALID_RESOURCE_ID);
  attach(bench, 1, scatteredBacking(bench, W * H * 4));
  setScanout(bench, 0, 1);
  bench.events.length = 0;
  assert.equal(unref(1), Resp.OK_NODATA);
  assert.deepEqual(
    bench.events.map((e) => [e.name, ...e.args]),
    [
      ['scanoutSet', 0, null],
      ['resourceDestroyed', 1],
    ],
  );
  assert.equal(unref(1), Resp.ERR_INVALID_RESOURCE_ID);
  assert.equal(create2d(bench, 1), Resp.OK_NODATA, 'id reusable after unref');
});

test('fences: the response echoes the fence id and context', () => {
  const bench = new GpuBench();
  const response = bench.command(
    encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 8, 8], { fenceId: 0x1234_5678_9abcn, ctxId: 7 }),
  );
  const view = new DataView(response.buffer);
  assert.equal(view.getUint32(0, true), Resp.OK_NODATA);
  assert.equal(view.getUint32(4, true) & CtrlFlag.FENCE, CtrlFlag.FENCE);
  assert.equal(view.getBigUint64(8, true), 0x1234_5678_9abcn);
  assert.equal(view.getUint32(16, true), 7);
  const error = bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [99, 0], { fenceId: 5n }));
  assert.equal(responseType(error), Resp.ERR_INVALID_RESOURCE_ID);
  assert.equal(new DataView(error.buffer).getBigUint64(8, true), 5n, 'errors are fenced too');
  const plain = bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [1, 0]));
  assert.equal(new DataView(plain.buffer).getUint32(4, true), 0, 'no fence flag without a fence');
});

test('unknown and unsupported commands get ERR_UNSPEC; a headerless request too', () => {
  const bench = new GpuBench();
  for (const type of [0, 0x0108, 0x0109, 0x010b, 0x0200, 0x0207, 0xffffffff]) {
    assert.equal(
      responseType(bench.command(encodeRequest(type, [0, 0]))),
      Resp.ERR_UNSPEC,
      `type 0x${type.toString(16)}`,
    );
  }
  assert.equal(responseType(bench.command(new Uint8Array(10))), Resp.ERR_UNSPEC);
});

test('blob commands need VIRTIO_GPU_F_RESOURCE_BLOB', () => {
  const bench = new GpuBench();
  const base = bench.alloc.reserve(8192);
  const request = encodeRequest(
    Cmd.RESOURCE_CREATE_BLOB,
    [1, BlobMem.GUEST, BlobFlag.USE_SHAREABLE, 1, 0, 0, 8192, 0],
    {},
    encodeMemEntries([{ addr: base, length: 8192 }]),
  );
  assert.equal(responseType(bench.command(request)), Resp.ERR_UNSPEC);
});

test('RESOURCE_CREATE_BLOB (guest memory) and SET_SCANOUT_BLOB', () => {
  const bench = new GpuBench({ blob: true });
  const stride = 320;
  const size = stride * H + 64;
  const base = bench.alloc.reserve(size);
  const blob = (
    id: number,
    mem: number,
    flags: number,
    blobSize: number,
    entries: { addr: number | bigint; length: number }[],
  ) =>
    responseType(
      bench.command(
        encodeRequest(
          Cmd.RESOURCE_CREATE_BLOB,
          [id, mem, flags, entries.length, 0, 0, blobSize, 0],
          {},
          encodeMemEntries(entries),
        ),
      ),
    );
  const half = 4096;
  const entries = [
    { addr: base, length: half },
    { addr: base + half, length: size - half },
  ];
  assert.equal(blob(1, BlobMem.HOST3D, 0, size, entries), Resp.ERR_INVALID_PARAMETER, 'host blob');
  assert.equal(
    blob(1, BlobMem.GUEST, BlobFlag.USE_MAPPABLE, size, entries),
    Resp.ERR_INVALID_PARAMETER,
    'mappable',
  );
  assert.equal(
    blob(1, BlobMem.GUEST, 0, size + 1, entries),
    Resp.ERR_INVALID_PARAMETER,
    'entries too small',
  );
  assert.equal(blob(1, BlobMem.GUEST, 0, 0, entries), Resp.ERR_INVALID_PARAMETER, 'empty');
  assert.equal(blob(1, BlobMem.GUEST, BlobFlag.USE_SHAREABLE, size, entries), Resp.OK_NODATA);
  const res = bench.device.gpu.resource(1)!;
  assert.equal(res.kind, 'blob');
  assert.equal(res.size, size);
  assert.deepEqual(
    res.backing.map((r) => [r.offset, r.length]),
    [[base, size]],
  );

  const scanoutBlob = (
    id: number,
    width: number,
    height: number,
    format: number,
    strideValue: number,
    offset: number,
    rect = [0, 0, width, height],
  ) =>
    responseType(
      bench.command(
        encodeRequest(Cmd.SET_SCANOUT_BLOB, [
          ...rect,
          0,
          id,
          width,
          height,
          format,
          0,
          strideValue,
          0,
          0,
          0,
          offset,
          0,
          0,
          0,
        ]),
      ),
    );
  assert.equal(
    scanoutBlob(1, W, H, VirtioFormat.B8G8R8X8_UNORM, 100, 0),
    Resp.ERR_INVALID_PARAMETER,
    'stride < width*4',
  );
  assert.equal(
    scanoutBlob(1, W, H, VirtioFormat.B8G8R8X8_UNORM, stride, 4096),
    Resp.ERR_INVALID_PARAMETER,
    'past the blob',
  );
  assert.equal(scanoutBlob(1, W, H, 77, stride, 0), Resp.ERR_INVALID_PARAMETER, 'format');
  assert.equal(
    scanoutBlob(2, W, H, VirtioFormat.B8G8R8X8_UNORM, stride, 0),
    Resp.ERR_INVALID_RESOURCE_ID,
  );
  assert.equal(scanoutBlob(1, W, H, VirtioFormat.B8G8R8X8_UNORM, stride, 64), Resp.OK_NODATA);
  const [, scanout] = bench.eventsNamed('scanoutSet').at(-1) as [number, ScanoutInfo];
  assert.equal(scanout.stride, stride);
  assert.equal(scanout.offset, 64);
  assert.equal(scanout.fourcc, DrmFormat.XRGB8888);
  const layout = bench.device.gpu.resource(1)!;
  assert.equal(layout.width, W);
  assert.equal(layout.stride, stride);
  create2d(bench, 3);
  assert.equal(
    scanoutBlob(3, W, H, VirtioFormat.B8G8R8X8_UNORM, stride, 0),
    Resp.ERR_INVALID_PARAMETER,
    '2D via blob',
  );
  assert.equal(setScanout(bench, 0, 1), Resp.ERR_INVALID_PARAMETER, 'blob via SET_SCANOUT');
  assert.equal(attach(bench, 1, entries), Resp.ERR_UNSPEC, 'blob backing is fixed');
  const flush = responseType(bench.command(encodeRequest(Cmd.RESOURCE_FLUSH, [0, 0, W, H, 1, 0])));
  assert.equal(flush, Resp.OK_NODATA);
  assert.deepEqual(bench.eventsNamed('flush').at(-1), [0, [{ x: 0, y: 0, width: W, height: H }]]);
});

test('readPixels copies exactly the guest pixels (the explicit fallback)', () => {
  const bench = new GpuBench();
  create2d(bench, 1);
  const entries = scatteredBacking(bench, W * H * 4);
  attach(bench, 1, entries);
  // Pixel (x, y) = x | y << 8 | 0xab << 16, written through the scattered pages.
  let at = 0;
  for (const entry of entries) {
    for (let i = 0; i < entry.length; i += 4) {
      const pixel = (at + i) / 4;
      const x = pixel % W;
      const y = Math.floor(pixel / W);
      new DataView(bench.ramBuffer).setUint32(entry.addr + i, x | (y << 8) | (0xab << 16), true);
    }
    at += entry.length;
  }
  const rect = { x: 3, y: 5, width: 40, height: 20 };
  const target = new Uint8Array(rect.width * rect.height * 4);
  assert.equal(bench.device.gpu.readPixels(1, rect, target), true);
  const view = new DataView(target.buffer);
  for (let y = 0; y < rect.height; y++) {
    for (let x = 0; x < rect.width; x++) {
      assert.equal(
        view.getUint32((y * rect.width + x) * 4, true),
        (x + 3) | ((y + 5) << 8) | (0xab << 16),
      );
    }
  }
  assert.equal(bench.device.gpu.counters.bytesCopied, target.length);
  assert.equal(
    bench.device.gpu.readPixels(1, { x: 60, y: 0, width: 10, height: 1 }, target),
    false,
  );
  assert.equal(bench.device.gpu.readPixels(2, rect, target), false);
  assert.equal(bench.device.gpu.readPixels(1, rect, new Uint8Array(10)), false);
});

test('cursor queue: UPDATE_CURSOR reads the image, MOVE_CURSOR moves, resource 0 hides', () => {
  const bench = new GpuBench();
  create2d(bench, 5, 64, 64, VirtioFormat.B8G8R8A8_UNORM);
  const entries = scatteredBacking(bench, 64 * 64 * 4);
  attach(bench, 5, entries);
  new DataView(bench.ramBuffer).setUint32(entries[0]!.addr, 0x80ff0000, true);
  bench.cursorCommand(encodeRequest(Cmd.UPDATE_CURSOR, [0, 100, 200, 0, 5, 3, 4, 0]));
  bench.cursorCommand(encodeRequest(Cmd.MOVE_CURSOR, [0, 110, 210, 0, 5, 0, 0, 0]));
  bench.cursorCommand(encodeRequest(Cmd.UPDATE_CURSOR, [0, 1, 2, 0, 0, 0, 0, 0]));
  bench.cursorCommand(encodeRequest(Cmd.UPDATE_CURSOR, [3, 1, 2, 0, 5, 0, 0, 0]));
  bench.cursorCommand(encodeRequest(Cmd.UPDATE_CURSOR, [0, 1, 2, 0, 99, 0, 0, 0]));
  const cursors = bench.eventsNamed('cursor').map((args) => args[0] as CursorUpdate);
  assert.equal(cursors.length, 3);
  const [update, move, hide] = cursors;
  assert.equal(update!.x, 100);
  assert.equal(update!.image!.hotX, 3);
  assert.equal(update!.image!.hotY, 4);
  assert.equal(update!.image!.fourcc, DrmFormat.ARGB8888);
  assert.equal(new DataView(update!.image!.pixels.buffer).getUint32(0, true), 0x80ff0000);
  assert.deepEqual(move, { headId: 0, x: 110, y: 210 });
  assert.deepEqual(hide, { headId: 0, x: 1, y: 2, image: null });
  assert.equal(bench.device.gpu.counters.errors, 2, 'bad scanout and unknown resource counted');
});

test("a cursor on a B8G8R8X8 resource (Linux's dumb buffers) keeps its alpha: ARGB8888", () => {
  const bench = new GpuBench();
  create2d(bench, 7, 64, 64, VirtioFormat.B8G8R8X8_UNORM);
  const entries = scatteredBacking(bench, 64 * 64 * 4);
  attach(bench, 7, entries);
  new DataView(bench.ramBuffer).setUint32(entries[0]!.addr, 0x00123456, true);
  bench.cursorCommand(encodeRequest(Cmd.UPDATE_CURSOR, [0, 10, 20, 0, 7, 5, 3, 0]));
  const [update] = bench.eventsNamed('cursor').map((args) => args[0] as CursorUpdate);
  assert.equal(update!.image!.fourcc, DrmFormat.ARGB8888, 'transparent stays transparent');
  assert.equal(new DataView(update!.image!.pixels.buffer).getUint32(0, true), 0x00123456);
});

test('a response buffer too small for the response gets ERR_UNSPEC, smaller than a header is dropped', () => {
  const bench = new GpuBench();
  const small = bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), HDR_SIZE);
  assert.equal(responseType(small), Resp.ERR_UNSPEC);
  const none = bench.command(encodeRequest(Cmd.GET_DISPLAY_INFO, []), 8);
  assert.equal(none.length, 0);
  assert.equal(bench.device.counters.dropped, 1);
  assert.ok(bench.logs.some((l) => /no room for a response/.test(l.message)));
});

test('a request split over several descriptors and an indirect table', () => {
  const bench = new GpuBench();
  const request = encodeRequest(Cmd.RESOURCE_CREATE_2D, [1, 2, 16, 16]);
  const a = bench.write(request.subarray(0, 7));
  const b = bench.write(request.subarray(7, 30));
  const c = bench.write(request.subarray(30));
  const resp = bench.alloc.take(HDR_SIZE);
  bench.control.addChain([
    { gpa: a, length: 7, write: false },
    { gpa: b, length: 23, write: false },
    { gpa: c, length: request.length - 30, write: false },
    { gpa: resp, length: 10, write: true },
    { gpa: resp + 10, length: 14, write: true },
  ]);
  bench.kickQueue(0);
  assert.deepEqual(
    bench.control.takeUsed().map((u) => u.length),
    [HDR_SIZE],
  );
  assert.equal(new DataView(bench.ramBuffer).getUint32(resp, true), Resp.OK_NODATA);
  bench.alloc.reset();
  assert.equal(
    responseType(bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [1, 0]), HDR_SIZE, true)),
    Resp.OK_NODATA,
  );
});

test('a head the display info calls disabled is enabled while the guest scans out on it', () => {
  const bench = new GpuBench({ scanouts: 2 });
  const gpu = bench.device.gpu;
  gpu.setHeads(gpu.heads().map((head) => ({ ...head, enabled: head.id === 0 })));
  create2d(bench, 1);
  attach(bench, 1, scatteredBacking(bench, W * H * 4));
  const enabledAfterEach = () =>
    (bench.eventsNamed('headsChanged') as [HeadInfo[]][]).map(([heads]) =>
      heads.map((head) => head.enabled),
    );
  assert.deepEqual(enabledAfterEach(), [[true, false]]);
  assert.equal(setScanout(bench, 1, 1), Resp.OK_NODATA);
  assert.deepEqual(enabledAfterEach(), [
    [true, false],
    [true, true],
  ]);
  // Disabling the scanout (resource 0) returns the head to what the display info said.
  assert.equal(setScanout(bench, 1, 0, [0, 0, 0, 0]), Resp.OK_NODATA);
  assert.deepEqual(enabledAfterEach().at(-1), [true, false]);
  // A head that was enabled anyway stays enabled when its scanout goes.
  assert.equal(setScanout(bench, 0, 1), Resp.OK_NODATA);
  assert.equal(setScanout(bench, 0, 0, [0, 0, 0, 0]), Resp.OK_NODATA);
  assert.deepEqual(enabledAfterEach().at(-1), [true, false]);
});

test('backing limits: overlaps, more than the resource needs, device span and byte totals', () => {
  const bench = new GpuBench({ limits: { maxTotalSpans: 40, maxTotalBackingBytes: 64 * 4096 } });
  const page = bench.alloc.reserve(8 * 4096);
  const lastWarning = () => bench.logs.filter((l) => l.level === 'warn').at(-1)?.message ?? '';
  // The demonstrated attack: a 1x1 resource whose entries alternate two pages, 16,384 times.
  create2d(bench, 1, 1, 1);
  const alternating = Array.from({ length: 16384 }, (_, i) => ({
    addr: page + (i % 2) * 4096,
    length: 4096,
  }));
  assert.equal(attach(bench, 1, alternating), Resp.ERR_INVALID_PARAMETER);
  assert.match(lastWarning(), /limit: backing entries of resource 1 overlap/);
  // Not overlapping, but more than a 1x1 resource needs (one page).
  assert.equal(
    attach(bench, 1, [
      { addr: page, length: 4096 },
      { addr: page + 2 * 4096, length: 4096 },
    ]),
    Resp.ERR_INVALID_PARAMETER,
  );
  assert.match(
    lastWarning(),
    /limit: resource 1 backing of 8192 bytes exceeds its size rounded to pages \(4096\)/,
  );
  assert.equal(attach(bench, 1, [{ addr: page, length: 4096 }]), Resp.OK_NODATA, 'one page fits');
  assert.deepEqual(bench.device.gpu.backingTotals, { spans: 1, bytes: 4096 });

  // Device totals: 40 spans, 64 pages. A 64x32 XRGB resource is 2 pages.
  for (let id = 2; id < 40; id++) create2d(bench, id);
  const scattered = (id: number) => attach(bench, id, scatteredBacking(bench, W * H * 4));
  let id = 2;
  while (scattered(id) === Resp.OK_NODATA) id++;
  assert.match(lastWarning(), /limit maxTotalSpans \(40\) reached: resource \d+ brings 2 spans/);
  assert.equal(bench.device.gpu.backingTotals.spans, 39);
  // Freed backing is given back: unref two resources, and two more fit again.
  bench.command(encodeRequest(Cmd.RESOURCE_UNREF, [2, 0]));
  assert.equal(bench.device.gpu.backingTotals.spans, 37);
  assert.equal(scattered(id), Resp.OK_NODATA);
  assert.equal(bench.device.gpu.backingTotals.spans, 39);

  const bytes = new GpuBench({ limits: { maxTotalBackingBytes: 3 * W * H * 4 } });
  for (let n = 1; n <= 4; n++) create2d(bytes, n);
  for (let n = 1; n <= 3; n++)
    assert.equal(attach(bytes, n, scatteredBacking(bytes, W * H * 4)), Resp.OK_NODATA);
  assert.equal(attach(bytes, 4, scatteredBacking(bytes, W * H * 4)), Resp.ERR_OUT_OF_MEMORY);
  assert.match(
    bytes.logs.filter((l) => l.level === 'warn').at(-1)?.message ?? '',
    /limit maxTotalBackingBytes \(24576\) reached/,
  );
  assert.throws(
    () => new GpuBench({ limits: { maxTotalSpans: 0 } }),
    /maxTotalSpans must be a positive integer/,
  );
});
