import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  DrmFormat,
  FormatSet,
  addTrancheFormats,
  bytesPerPixel,
  dmabufFormatRefusal,
  drmToShmFormat,
  fourcc,
  fourccName,
  joinModifier,
  modifierHi,
  modifierLo,
  parseFormatTable,
  shmToDrmFormat,
} from '../../plugin/common/formats.js';

test('fourcc codes match drm_fourcc.h', () => {
  assert.equal(DrmFormat.XRGB8888, 0x34325258);
  assert.equal(DrmFormat.ARGB8888, 0x34325241);
  assert.equal(fourccName(0x34325258), 'XR24');
  assert.throws(() => fourcc('XR2'), RangeError);
  assert.equal(drmToShmFormat(DrmFormat.XRGB8888), 1);
  assert.equal(drmToShmFormat(DrmFormat.ARGB8888), 0);
  assert.equal(drmToShmFormat(DrmFormat.XBGR8888), DrmFormat.XBGR8888);
  assert.equal(shmToDrmFormat(0), DrmFormat.ARGB8888);
  assert.equal(shmToDrmFormat(1), DrmFormat.XRGB8888);
  assert.equal(bytesPerPixel(DrmFormat.XRGB8888), 4);
  assert.equal(bytesPerPixel(fourcc('NV12')), null);
});

test('modifiers split and join through hi/lo', () => {
  for (const modifier of [DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_MOD_INVALID, 0x0100000000000002n]) {
    assert.equal(joinModifier(modifierHi(modifier), modifierLo(modifier)), modifier);
  }
  assert.equal(modifierHi(DRM_FORMAT_MOD_INVALID), 0x00ffffff);
  assert.equal(modifierLo(DRM_FORMAT_MOD_INVALID), 0xffffffff);
  assert.equal(joinModifier(-1, -1), 0xffffffffffffffffn);
});

test('a v4 format table decodes and tranches select from it', () => {
  const table = new Uint8Array(48);
  const view = new DataView(table.buffer);
  const entries: [number, bigint][] = [
    [DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR],
    [DrmFormat.ARGB8888, DRM_FORMAT_MOD_INVALID],
    [DrmFormat.XRGB8888, 0x0100000000000001n],
  ];
  entries.forEach(([format, modifier], i) => {
    view.setUint32(i * 16, format, true);
    view.setUint32(i * 16 + 4, 0xdeadbeef, true); // padding is ignored
    view.setBigUint64(i * 16 + 8, modifier, true);
  });
  const decoded = parseFormatTable(table);
  assert.deepEqual(
    decoded.map((e) => [e.format, e.modifier]),
    entries,
  );
  assert.throws(() => parseFormatTable(new Uint8Array(20)), /multiple of 16/);

  const set = new FormatSet();
  const indices = new Uint8Array(new Uint16Array([0, 1, 99]).buffer);
  assert.equal(addTrancheFormats(indices, decoded, set), 1, 'index 99 is out of range');
  assert.equal(set.has(DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR), true);
  assert.equal(set.has(DrmFormat.XRGB8888, 0x0100000000000001n), false);
  assert.equal(set.has(DrmFormat.ARGB8888, DRM_FORMAT_MOD_INVALID), true);
  assert.equal(set.size, 2);
  assert.equal(set.describe(), 'XR24:LINEAR AR24:INVALID');
});

test('format refusals explain themselves', () => {
  const set = new FormatSet();
  set.add(DrmFormat.XRGB8888, DRM_FORMAT_MOD_INVALID);
  assert.match(
    dmabufFormatRefusal(null, DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR) ?? '',
    /no zwp_linux_dmabuf_v1/,
  );
  assert.match(
    dmabufFormatRefusal(set, DrmFormat.ABGR8888, DRM_FORMAT_MOD_LINEAR) ?? '',
    /format AB24/,
  );
  assert.match(
    dmabufFormatRefusal(set, DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR) ?? '',
    /XR24 with modifier LINEAR \(it offers INVALID\)/,
  );
  assert.equal(dmabufFormatRefusal(set, DrmFormat.XRGB8888, DRM_FORMAT_MOD_INVALID), null);
});
