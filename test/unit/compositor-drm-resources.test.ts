// The KMS backend's bookkeeping against a recording fake device: framebuffer cache (PRIME handle
// reference counts, RmFB deferred while on screen), KMS state save/restore, and the cursor-plane
// split of the scene's layers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectType, PropertyFlag, type DrmDevice } from '../../native/drm.js';
import { DmabufBuffer, type DmabufFdOps } from '../../examples/compositor/buffers/dmabuf-buffer.js';
import { FramebufferCache } from '../../examples/compositor/drm/framebuffers.js';
import {
  describeKmsState,
  restoreKmsState,
  saveKmsState,
} from '../../examples/compositor/drm/kms-state.js';
import { planeFormatSet, splitCursorLayer } from '../../examples/compositor/drm/scanout.js';
import { Fourcc, Modifier } from '../../examples/compositor/dmabuf/formats.js';
import type { SceneLayer } from '../../examples/compositor/render/compose.js';

const fakeFdOps: DmabufFdOps = {
  fdSize: () => 1 << 20,
  getSeals: () => {
    throw new Error('not a memfd');
  },
  pread: () => 0,
  mmap: () => new ArrayBuffer(0),
  munmap: () => {},
  dmabufSync: () => {},
  close: () => {},
};

function dmabuf(fds: number[], modifier: bigint = Modifier.LINEAR): DmabufBuffer {
  return new DmabufBuffer(
    {
      width: 64,
      height: 32,
      format: fds.length === 2 ? Fourcc.NV12 : Fourcc.XRGB8888,
      modifier,
      flags: 0,
      planes: fds.map((fd, index) => ({ fd, offset: index * 4096, stride: 256 })),
    },
    fakeFdOps,
  );
}

class FakeDevice {
  readonly calls: string[] = [];
  private nextHandle = 1;
  private nextFb = 100;
  private readonly handles = new Map<number, number>();
  failAddFb = false;

  importDmabuf(fd: number): number {
    let handle = this.handles.get(fd);
    if (handle === undefined) {
      handle = this.nextHandle++;
      this.handles.set(fd, handle);
    }
    this.calls.push(`import ${fd} -> ${handle}`);
    return handle;
  }

  closeHandle(handle: number): void {
    this.calls.push(`close ${handle}`);
    for (const [fd, h] of this.handles) if (h === handle) this.handles.delete(fd);
  }

  addFramebuffer(spec: { handles: number[]; modifiers?: bigint[] }): number {
    if (this.failAddFb) throw new Error('drmModeAddFB2WithModifiers: Invalid argument');
    const fb = this.nextFb++;
    this.calls.push(
      `addfb ${fb} handles ${spec.handles.join(',')} ${spec.modifiers ? 'modifiers' : 'implicit'}`,
    );
    return fb;
  }

  removeFramebuffer(fb: number): void {
    this.calls.push(`rmfb ${fb}`);
  }
}

test('one framebuffer per wl_buffer; shared dma-bufs share a GEM handle until the last one goes', () => {
  const device = new FakeDevice();
  let onScreen = 0;
  const logs: string[] = [];
  const cache = new FramebufferCache(
    device as unknown as DrmDevice,
    (fb) => fb === onScreen,
    (line) => logs.push(line),
  );
  const first = dmabuf([7]);
  const second = dmabuf([7]); // the same dma-buf behind a second wl_buffer
  const a = cache.get(first);
  assert.equal(typeof a, 'object');
  assert.equal(cache.get(first), a, 'cached');
  const b = cache.get(second);
  assert.ok(typeof a === 'object' && typeof b === 'object');
  assert.deepEqual(a.handles, b.handles, 'PRIME gives the same handle');
  assert.equal(cache.size, 2);
  const [aFb, bFb, handle] = [a.fbId, b.fbId, a.handles[0]];

  // The first buffer is destroyed while on screen: nothing is removed until it leaves.
  onScreen = aFb;
  first.destroy();
  assert.equal(a.gone, true);
  assert.ok(!device.calls.some((c) => c.startsWith('rmfb')), device.calls.join('; '));
  assert.equal(cache.size, 2);
  onScreen = bFb;
  cache.collect();
  assert.ok(device.calls.includes(`rmfb ${aFb}`));
  assert.equal(a.fbId, 0);
  assert.ok(!device.calls.some((c) => c.startsWith('close')), 'handle still used by the other');

  // The second one (not on screen after a flip) goes at once, with the handle.
  onScreen = 0;
  second.destroy();
  assert.ok(device.calls.includes(`rmfb ${bFb}`));
  assert.ok(device.calls.includes(`close ${handle}`));
  assert.equal(cache.size, 0);
  cache.close();
});

test('implicit modifiers go without DRM_MODE_FB_MODIFIERS; a refused import is remembered', () => {
  const device = new FakeDevice();
  const logs: string[] = [];
  const cache = new FramebufferCache(
    device as unknown as DrmDevice,
    () => false,
    (line) => logs.push(line),
  );
  const implicit = dmabuf([3], Modifier.INVALID);
  assert.equal(typeof cache.get(implicit), 'object');
  assert.match(device.calls.join('; '), /addfb \d+ handles 1 implicit/);
  const twoPlanes = dmabuf([4, 4]);
  assert.equal(typeof cache.get(twoPlanes), 'object');
  assert.match(device.calls.join('; '), /addfb \d+ handles 2,2 modifiers/);

  device.failAddFb = true;
  const refused = dmabuf([5]);
  const reason = cache.get(refused);
  assert.match(String(reason), /import failed: .*Invalid argument/);
  assert.ok(device.calls.includes('close 3'), 'the handle taken for it is closed again');
  const calls = device.calls.length;
  assert.equal(cache.get(refused), reason, 'not retried');
  assert.equal(device.calls.length, calls);
  assert.equal(logs.length, 1);

  cache.close();
  assert.ok(device.calls.includes('close 1') && device.calls.includes('close 2'));
  // Destroying a buffer after close does not touch the device again.
  const after = device.calls.length;
  implicit.destroy();
  assert.equal(device.calls.length, after);
});

test('KMS state: mutable properties saved by value, blobs by content, restored in one commit', () => {
  const property = (id: number, name: string, value: bigint, flags = 0) => ({
    id,
    name,
    flags,
    value,
    enums: new Map(),
    enumName: null,
    range: null,
  });
  const blobs = new Map<number, Uint8Array>([[77, new Uint8Array([1, 2, 3])]]);
  const commits: {
    request: { objectIds: number[]; propertyIds: number[]; values: bigint[] };
    flags: number;
  }[] = [];
  const destroyed: number[] = [];
  let nextBlob = 201;
  const device = {
    resources: () => ({ crtcs: [10], connectors: [20] }),
    properties: (id: number, type: number) => {
      if (type === ObjectType.CRTC) {
        return new Map([
          ['ACTIVE', property(1, 'ACTIVE', 1n)],
          ['MODE_ID', property(2, 'MODE_ID', 77n, PropertyFlag.BLOB)],
          ['OUT_FENCE_PTR', property(3, 'OUT_FENCE_PTR', 0n)],
        ]);
      }
      assert.equal(id, 20);
      return new Map([
        ['CRTC_ID', property(4, 'CRTC_ID', 10n)],
        ['DPMS', property(5, 'DPMS', 0n)],
        ['EDID', property(6, 'EDID', 0n, PropertyFlag.IMMUTABLE | PropertyFlag.BLOB)],
      ]);
    },
    planes: () => [
      {
        id: 30,
        properties: new Map([
          ['FB_ID', property(7, 'FB_ID', 55n)],
          ['type', property(8, 'type', 1n, PropertyFlag.IMMUTABLE)],
        ]),
      },
    ],
    blob: (id: number) => blobs.get(id)!,
    createBlob: (bytes: Uint8Array) => {
      const id = nextBlob++;
      blobs.set(id, bytes);
      return id;
    },
    destroyBlob: (id: number) => destroyed.push(id),
    commit: (request: (typeof commits)[0]['request'], flags: number) => {
      commits.push({ request, flags });
      return [];
    },
  } as unknown as DrmDevice;
  const state = saveKmsState(device);
  assert.deepEqual(describeKmsState(state), {
    'crtc 10 ACTIVE': '1',
    'crtc 10 MODE_ID': '010203',
    'connector 20 CRTC_ID': '10',
    'plane 30 FB_ID': '55',
  });
  blobs.delete(77); // our modeset dropped the kernel's blob
  restoreKmsState(device, state);
  assert.equal(commits.length, 1);
  const { request, flags } = commits[0]!;
  assert.equal(flags, 0x400, 'ALLOW_MODESET, blocking');
  const set = request.objectIds.map(
    (object, i) => `${object}/${request.propertyIds[i]}=${request.values[i]}`,
  );
  assert.deepEqual(set, ['10/1=1', '10/2=201', '20/4=10', '30/7=55']);
  assert.deepEqual(blobs.get(201), new Uint8Array([1, 2, 3]), 'the mode recreated from bytes');
  assert.deepEqual(destroyed, [201], 'our blob reference dropped after the commit');
});

test('the topmost small unscaled ARGB surface goes to the cursor plane', () => {
  const layer = (
    width: number,
    height: number,
    x = 0,
    y = 0,
    format: number = Fourcc.XRGB8888,
    extra: Partial<SceneLayer['geometry']> = {},
  ): SceneLayer => ({
    buffer: { width, height, format, beginRead: () => null, endRead: () => {} },
    x,
    y,
    geometry: { bufferWidth: width, bufferHeight: height, scale: 1, transform: 0, ...extra },
  });
  const cursorPlane = planeFormatSet([{ format: Fourcc.ARGB8888, modifier: Modifier.LINEAR }]);
  const max = { width: 64, height: 64 };
  const guest = layer(640, 480);
  const pointer = layer(16, 16, 100, 80, Fourcc.ARGB8888);
  const split = splitCursorLayer([guest, pointer], 640, 480, max, cursorPlane);
  assert.equal(split.cursor?.layer, pointer);
  assert.deepEqual(split.rest, [guest]);
  for (const [why, layers] of [
    ['alone', [pointer]],
    ['too big', [guest, layer(65, 16, 0, 0, Fourcc.ARGB8888)]],
    ['scaled', [guest, layer(16, 16, 0, 0, Fourcc.ARGB8888, { scale: 2 })]],
    ['rotated', [guest, layer(16, 16, 0, 0, Fourcc.ARGB8888, { transform: 1 })]],
    ['RGB565', [guest, layer(16, 16, 0, 0, Fourcc.RGB565)]],
    ['off the output', [guest, layer(16, 16, 700, 0, Fourcc.ARGB8888)]],
  ] as const) {
    const result = splitCursorLayer(layers, 640, 480, max, cursorPlane);
    assert.equal(result.cursor, null, why);
    assert.equal(result.rest, layers, why);
  }
});
