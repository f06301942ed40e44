// native/drm.ts on the host (no DRM device here): the binary decoders and encoders, atomic
// request building, format names and error shapes. Real devices are exercised in the VM tier.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  AtomicRequest,
  DRM_EVENT_FLIP_COMPLETE,
  DrmDevice,
  MODE_INFO_SIZE,
  connectorTypeName,
  decodeDrmEvents,
  decodeInFormats,
  decodeModeInfo,
  decodeModeInfos,
  decodeU32Blob,
  drm,
  encodeModeInfo,
  formatName,
  type DrmObject,
  type ModeInfo,
} from '../../native/drm.js';
import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  DrmFormat,
  fourcc,
} from '../../plugin/common/formats.js';
import { fd } from '../../native/fd.js';
import { isSystemError } from '../../native/index.js';

const baseline = fd.openFdCount();
test.after(() => assert.equal(fd.openFdCount(), baseline));

const mode1080p: ModeInfo = {
  clock: 148500,
  hdisplay: 1920,
  hsyncStart: 2008,
  hsyncEnd: 2052,
  htotal: 2200,
  hskew: 0,
  vdisplay: 1080,
  vsyncStart: 1084,
  vsyncEnd: 1089,
  vtotal: 1125,
  vscan: 0,
  vrefresh: 60,
  flags: 5,
  type: 0x48,
  name: '1920x1080',
};

test('fourcc codes and libdrm format names', () => {
  assert.equal(DrmFormat.XRGB8888, 0x34325258);
  assert.equal(DrmFormat.ARGB8888, 0x34325241);
  assert.equal(formatName(DrmFormat.XRGB8888), 'XR24');
  assert.equal(formatName(fourcc('NV12')), 'NV12');
  assert.throws(() => fourcc('XR2'), RangeError);
  assert.equal(DRM_FORMAT_MOD_INVALID, (1n << 56n) - 1n);
});

test('connector type names follow the kernel', () => {
  assert.equal(connectorTypeName(15), 'Virtual');
  assert.equal(connectorTypeName(18), 'Writeback');
  assert.equal(connectorTypeName(11), 'HDMI-A');
  assert.equal(connectorTypeName(99), 'Type99');
});

test('mode infos encode to the 68-byte kernel layout and decode back', () => {
  const bytes = encodeModeInfo(mode1080p);
  assert.equal(bytes.length, MODE_INFO_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 148500);
  assert.equal(view.getUint16(4, true), 1920);
  assert.equal(view.getUint16(14, true), 1080);
  assert.equal(view.getUint32(24, true), 60);
  assert.equal(new TextDecoder().decode(bytes.subarray(36, 45)), '1920x1080');
  assert.equal(bytes[45], 0);
  assert.deepEqual(decodeModeInfo(bytes), mode1080p);
  const two = new Uint8Array(2 * MODE_INFO_SIZE);
  two.set(bytes, MODE_INFO_SIZE);
  assert.deepEqual(decodeModeInfos(two)[1], mode1080p);
  assert.throws(() => decodeModeInfos(new Uint8Array(70)), RangeError);
  assert.throws(() => decodeModeInfo(bytes, 1), RangeError);
  assert.throws(() => encodeModeInfo({ ...mode1080p, hdisplay: 70000 }), RangeError);
  assert.throws(() => encodeModeInfo({ ...mode1080p, clock: -1 }), RangeError);
  const long = decodeModeInfo(encodeModeInfo({ ...mode1080p, name: 'x'.repeat(40) }));
  assert.equal(long.name, 'x'.repeat(31), 'names are cut to leave the NUL');
});

/** Builds an IN_FORMATS blob like the kernel's create_in_format_blob. */
function inFormatsBlob(
  formats: number[],
  modifiers: { mask: bigint; offset: number; modifier: bigint }[],
): Uint8Array {
  const formatsOffset = 24;
  const modifiersOffset = formatsOffset + Math.ceil((formats.length * 4) / 8) * 8;
  const bytes = new Uint8Array(modifiersOffset + modifiers.length * 24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 1, true);
  view.setUint32(8, formats.length, true);
  view.setUint32(12, formatsOffset, true);
  view.setUint32(16, modifiers.length, true);
  view.setUint32(20, modifiersOffset, true);
  formats.forEach((format, i) => view.setUint32(formatsOffset + 4 * i, format, true));
  modifiers.forEach((entry, i) => {
    const at = modifiersOffset + 24 * i;
    view.setBigUint64(at, entry.mask, true);
    view.setUint32(at + 8, entry.offset, true);
    view.setBigUint64(at + 16, entry.modifier, true);
  });
  return bytes;
}

test('IN_FORMATS blobs decode into format and modifier pairs, bounds checked', () => {
  const nv12 = fourcc('NV12');
  const blob = inFormatsBlob(
    [DrmFormat.XRGB8888, DrmFormat.ARGB8888, nv12],
    [
      { mask: 0b111n, offset: 0, modifier: DRM_FORMAT_MOD_LINEAR },
      { mask: 0b011n, offset: 0, modifier: 0x0100000000000001n },
    ],
  );
  assert.deepEqual(decodeInFormats(blob), [
    { format: DrmFormat.XRGB8888, modifier: 0n },
    { format: DrmFormat.ARGB8888, modifier: 0n },
    { format: nv12, modifier: 0n },
    { format: DrmFormat.XRGB8888, modifier: 0x0100000000000001n },
    { format: DrmFormat.ARGB8888, modifier: 0x0100000000000001n },
  ]);
  // A mask with an offset past 64 formats.
  const many = Array.from({ length: 70 }, (_, i) => 0x1000 + i);
  const high = decodeInFormats(inFormatsBlob(many, [{ mask: 0b101n, offset: 64, modifier: 7n }]));
  assert.deepEqual(high, [
    { format: 0x1000 + 64, modifier: 7n },
    { format: 0x1000 + 66, modifier: 7n },
  ]);
  assert.throws(() => decodeInFormats(blob.subarray(0, 20)), RangeError);
  assert.throws(
    () => decodeInFormats(blob.subarray(0, blob.length - 1)),
    /modifier list out of bounds/,
  );
  const badVersion = blob.slice();
  badVersion[0] = 2;
  assert.throws(() => decodeInFormats(badVersion), /version 2/);
  const hugeCount = blob.slice();
  new DataView(hugeCount.buffer).setUint32(8, 0xffffffff, true);
  assert.throws(() => decodeInFormats(hugeCount), /format list out of bounds/);
  const strayBit = inFormatsBlob([DrmFormat.XRGB8888], [{ mask: 0b10n, offset: 0, modifier: 0n }]);
  assert.throws(() => decodeInFormats(strayBit), /missing format/);
  assert.deepEqual(decodeU32Blob(new Uint8Array([0x58, 0x52, 0x32, 0x34])), [DrmFormat.XRGB8888]);
  assert.throws(() => decodeU32Blob(new Uint8Array(3)), RangeError);
});

test('DRM events are split and decoded', () => {
  const bytes = new Uint8Array(32 + 16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, DRM_EVENT_FLIP_COMPLETE, true);
  view.setUint32(4, 32, true);
  view.setBigUint64(8, 0x1234n, true);
  view.setUint32(16, 10, true);
  view.setUint32(20, 500, true);
  view.setUint32(24, 77, true);
  view.setUint32(28, 41, true);
  view.setUint32(32, 0x80000000, true); // a driver-private event: kept as a bare type
  view.setUint32(36, 16, true);
  assert.deepEqual(decodeDrmEvents(bytes), [
    { type: 2, userData: 0x1234n, seconds: 10, microseconds: 500, sequence: 77, crtcId: 41 },
    { type: 0x80000000 },
  ]);
  assert.throws(() => decodeDrmEvents(bytes.subarray(0, 40)), /bad DRM event length/);
  assert.throws(() => decodeDrmEvents(bytes.subarray(0, 4)), /truncated/);
  const zero = new Uint8Array(8);
  assert.throws(() => decodeDrmEvents(zero), /bad DRM event length/, 'a zero length cannot loop');
});

test('atomic requests collect ids, two-complement values and out fences by property name', () => {
  const property = (id: number, name: string) => ({
    id,
    name,
    flags: 0,
    value: 0n,
    enums: new Map<string, bigint>(),
    enumName: null,
    range: null,
  });
  const plane: DrmObject = {
    id: 31,
    properties: new Map([
      ['FB_ID', property(17, 'FB_ID')],
      ['CRTC_X', property(18, 'CRTC_X')],
    ]),
  };
  const writeback: DrmObject = {
    id: 40,
    properties: new Map([['WRITEBACK_OUT_FENCE_PTR', property(50, 'WRITEBACK_OUT_FENCE_PTR')]]),
  };
  const request = new AtomicRequest()
    .set(plane, 'FB_ID', 99)
    .set(plane, 'CRTC_X', -2)
    .add(7, 8, 1n << 40n);
  assert.deepEqual(request.objectIds, [31, 31, 7]);
  assert.deepEqual(request.propertyIds, [17, 18, 8]);
  assert.deepEqual(request.values, [99n, 0xfffffffffffffffen, 1n << 40n]);
  assert.equal(request.outFence(writeback, 'WRITEBACK_OUT_FENCE_PTR'), 0);
  assert.deepEqual(request.outFences, [{ objectId: 40, propertyId: 50 }]);
  assert.throws(() => request.set(plane, 'NOPE', 1), /has no property NOPE/);
});

test('native DRM calls report errno errors and check their arguments', () => {
  const expectErrno = (action: () => unknown, code: string) =>
    assert.throws(action, (error: unknown) => isSystemError(error) && error.code === code);
  expectErrno(() => DrmDevice.open(path.join(tmpdir(), 'guestfb-no-card')), 'ENOENT');
  // A memfd is not a DRM device: the ioctls fail with ENOTTY, nothing leaks.
  const memfd = fd.memfdCreate('not-drm');
  try {
    expectErrno(() => drm.getResources(memfd), 'ENOTTY');
    expectErrno(() => drm.setClientCap(memfd, 3, 1), 'ENOTTY');
    expectErrno(
      () => drm.atomicCommit(memfd, [1], [2], [3n], 0, 0n, [{ objectId: 1, propertyId: 4 }]),
      'ENOTTY',
    );
    expectErrno(() => drm.createDumb(memfd, 64, 64, 32), 'ENOTTY');
    assert.throws(() => drm.atomicCommit(memfd, [1], [], [], 0), RangeError);
    assert.throws(() => drm.atomicCommit(memfd, [1], [2], [-1n], 0), RangeError);
    assert.throws(
      () =>
        drm.addFb2(memfd, {
          width: 1,
          height: 1,
          format: 1,
          handles: [1, 2, 3, 4, 5],
          pitches: [],
          offsets: [],
        }),
      RangeError,
    );
  } finally {
    fd.close(memfd);
  }
});

test('card discovery finds nothing where there are no cards', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'guestfb-dri-'));
  try {
    writeFileSync(path.join(dir, 'renderD128'), '');
    assert.deepEqual(DrmDevice.cardPaths(dir), []);
    assert.equal(DrmDevice.openByDriver('vkms', dir), null);
    assert.deepEqual(DrmDevice.cardPaths(path.join(dir, 'absent')), []);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
