// Runs INSIDE the kernel-tier VM with vkms loaded: scattered "guest RAM" pages wrapped by
// udmabuf are imported into vkms through PRIME, scanned out by an atomic commit, and captured by
// vkms's writeback connector; the captured pixels must equal the written ones. Started by
// test/vm/udmabuf.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Seal, fd, pageSize, waitReadable } from '../../../native/fd.js';
import {
  AtomicFlag,
  AtomicRequest,
  DRM_EVENT_FLIP_COMPLETE,
  DrmDevice,
  decodeU32Blob,
  formatName,
  propertyOf,
  type DrmConnector,
  type ModeInfo,
} from '../../../native/drm.js';
import { DRM_FORMAT_MOD_LINEAR, DrmFormat } from '../../../plugin/common/formats.js';
import { UdmabufExporter, type MemfdRange } from '../../../plugin/dmabuf/index.js';
import { scatteredPages } from '../../helpers/scattered-pages.js';

const FENCE_GUARD_MS = 120_000;

/** A pattern with distinct values in every channel; X is 0xff. */
function pixelAt(x: number, y: number, frame: number): number {
  const mixed =
    Math.imul(x + 1, 0x9e3779b1) ^ Math.imul(y + 1, 0x85ebca6b) ^ Math.imul(frame, 0x27d4eb2f);
  return (0xff000000 | (mixed & 0xffffff)) >>> 0;
}

/** Writes a frame (width × height XRGB, tightly packed) into the scattered guest pages. */
function writeFrame(ram: Uint8Array, pages: MemfdRange[], frame: Uint32Array): void {
  const bytes = new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
  pages.forEach((page, index) => {
    ram.set(bytes.subarray(index * pageSize, (index + 1) * pageSize), page.offset);
  });
}

/** Counts pixels of the captured buffer (with its pitch) that differ from `expected`. */
function countDiffering(
  captured: ArrayBuffer,
  pitch: number,
  expected: Uint32Array,
  width: number,
  height: number,
) {
  const view = new DataView(captured);
  let differing = 0;
  let firstDifference = '';
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const got = view.getUint32(y * pitch + x * 4, true);
      const want = expected[y * width + x]!;
      if (got !== want) {
        if (differing === 0)
          firstDifference = `(${x},${y}) got 0x${got.toString(16)} want 0x${want.toString(16)}`;
        differing++;
      }
    }
  }
  return { differing, firstDifference };
}

test('a udmabuf scanned out by vkms comes back exactly through the writeback connector', async (t) => {
  const baseline = fd.openFdCount();
  const device = DrmDevice.openByDriver('vkms');
  assert.ok(device, 'vkms is loaded and has a card node under /dev/dri');
  const cleanups: (() => void)[] = [() => device.close()];
  // Undo in reverse order; every step runs even when one fails, the first failure is reported.
  const cleanup = () => {
    let failure: unknown = null;
    for (const step of cleanups.reverse()) {
      try {
        step();
      } catch (error) {
        failure ??= error;
      }
    }
    cleanups.length = 0;
    if (failure !== null) throw failure;
  };
  try {
    device.enableAtomic(true);
    const connectors = device.connectors();
    for (const connector of connectors) {
      t.diagnostic(`${connector.name}: ${connector.status}, ${connector.modes.length} modes`);
    }
    const output = connectors.find(
      (c): c is DrmConnector => c.typeName === 'Virtual' && c.status === 'connected',
    );
    const writeback = connectors.find((c) => c.writeback);
    assert.ok(output, 'a connected Virtual connector');
    assert.ok(writeback, 'a writeback connector (needs DRM_CLIENT_CAP_WRITEBACK_CONNECTORS)');
    const crtc = device.crtcs().find((candidate) => output.possibleCrtcs.includes(candidate.id));
    assert.ok(crtc, 'a CRTC for the Virtual connector');
    assert.ok(writeback.possibleCrtcs.includes(crtc.id));
    const planes = device.planes();
    const primary = planes.find(
      (plane) => plane.type === 'primary' && plane.possibleCrtcs.includes(crtc.id),
    );
    assert.ok(primary, 'a primary plane');
    assert.ok(primary.formats.includes(DrmFormat.XRGB8888));
    assert.ok(primary.inFormats, 'the primary plane has IN_FORMATS');
    assert.ok(
      primary.inFormats.some(
        (pair) => pair.format === DrmFormat.XRGB8888 && pair.modifier === DRM_FORMAT_MOD_LINEAR,
      ),
      'XRGB8888 with the LINEAR modifier',
    );
    const writebackFormats = decodeU32Blob(
      device.blob(Number(propertyOf(writeback, 'WRITEBACK_PIXEL_FORMATS').value)),
    );
    t.diagnostic(`writeback formats: ${writebackFormats.map(formatName).join(' ')}`);
    assert.ok(writebackFormats.includes(DrmFormat.XRGB8888));

    const mode: ModeInfo =
      output.modes.find((m) => m.hdisplay === 1920 && m.vdisplay === 1080) ?? output.modes[0]!;
    const { hdisplay: width, vdisplay: height } = mode;
    t.diagnostic(`mode ${mode.name} ${width}x${height}@${mode.vrefresh}`);
    const frameBytes = width * height * 4;
    assert.equal(frameBytes % pageSize, 0);

    // "Guest RAM": a sealed memfd; the framebuffer is scattered over its pages.
    const probe = scatteredPages(0, frameBytes / pageSize, pageSize, 4242);
    const memfd = fd.memfdCreate('guestfb-guest-ram');
    cleanups.push(() => fd.close(memfd));
    fd.ftruncate(memfd, probe.bytes);
    fd.addSeals(memfd, Seal.SHRINK | Seal.GROW);
    const { pages } = scatteredPages(memfd, frameBytes / pageSize, pageSize, 4242);
    const ramMap = fd.mmap(memfd, 0, probe.bytes, true);
    cleanups.push(() => fd.munmap(ramMap));
    const ram = new Uint8Array(ramMap);
    const expected = new Uint32Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) expected[y * width + x] = pixelAt(x, y, 0);
    }
    writeFrame(ram, pages, expected);

    const exporter = UdmabufExporter.open();
    cleanups.push(() => exporter.dispose());
    const dmabuf = exporter.acquire(1, 1, pages);
    t.diagnostic(
      `${pages.length} pages -> ${dmabuf.rangeCount} ranges -> one dma-buf of ${dmabuf.size} bytes`,
    );

    const handle = device.importDmabuf(dmabuf.fd);
    cleanups.push(() => device.closeHandle(handle));
    const scanoutFb = device.addFramebuffer({
      width,
      height,
      format: DrmFormat.XRGB8888,
      handles: [handle],
      pitches: [width * 4],
      offsets: [0],
      modifiers: [DRM_FORMAT_MOD_LINEAR],
    });
    cleanups.push(() => device.removeFramebuffer(scanoutFb));

    const dumb = device.createDumb(width, height, 32);
    cleanups.push(() => device.destroyDumb(dumb.handle));
    const captureFb = device.addFramebuffer({
      width,
      height,
      format: DrmFormat.XRGB8888,
      handles: [dumb.handle],
      pitches: [dumb.pitch],
      offsets: [0],
    });
    cleanups.push(() => device.removeFramebuffer(captureFb));
    const captured = device.mapDumb(dumb.handle, dumb.size);
    cleanups.push(() => fd.munmap(captured));
    new Uint8Array(captured).fill(0); // so a capture that did nothing cannot pass

    const modeBlob = device.createModeBlob(mode);
    cleanups.push(() => device.destroyBlob(modeBlob));

    // vkms's Virtual and Writeback encoders are not clones of each other: one CRTC drives only
    // one of them, so the Virtual connector (fbdev put it on the CRTC at boot) is taken off.
    const scanout = (request: AtomicRequest) =>
      request
        .set(crtc, 'MODE_ID', modeBlob)
        .set(crtc, 'ACTIVE', 1)
        .set(output, 'CRTC_ID', 0)
        .set(primary, 'FB_ID', scanoutFb)
        .set(primary, 'CRTC_ID', crtc.id)
        .set(primary, 'SRC_X', 0)
        .set(primary, 'SRC_Y', 0)
        .set(primary, 'SRC_W', width * 65536)
        .set(primary, 'SRC_H', height * 65536)
        .set(primary, 'CRTC_X', 0)
        .set(primary, 'CRTC_Y', 0)
        .set(primary, 'CRTC_W', width)
        .set(primary, 'CRTC_H', height)
        .set(writeback, 'CRTC_ID', crtc.id)
        .set(writeback, 'WRITEBACK_FB_ID', captureFb);

    device.commit(scanout(new AtomicRequest()), AtomicFlag.TEST_ONLY | AtomicFlag.ALLOW_MODESET);

    const capture = async (label: string, flags: number) => {
      const request = scanout(new AtomicRequest());
      const fenceIndex = request.outFence(writeback, 'WRITEBACK_OUT_FENCE_PTR');
      const fence = device.commit(request, flags)[fenceIndex]!;
      assert.ok(fence >= 0, `${label}: the kernel returned an out fence`);
      try {
        await waitReadable(fence, FENCE_GUARD_MS);
      } finally {
        fd.close(fence);
      }
      const { differing, firstDifference } = countDiffering(
        captured,
        dumb.pitch,
        expected,
        width,
        height,
      );
      t.diagnostic(`${label}: ${differing} of ${width * height} pixels differ ${firstDifference}`);
      assert.equal(differing, 0, `${label}: first difference ${firstDifference}`);
    };

    await capture('first frame (modeset)', AtomicFlag.ALLOW_MODESET);

    // The guest draws again into its own pages: the next capture shows it with no re-import.
    for (let y = 100; y < 300; y++) {
      for (let x = 200; x < 600; x++) expected[y * width + x] = pixelAt(x, y, 1);
    }
    writeFrame(ram, pages, expected);
    new Uint8Array(captured).fill(0);
    await capture('second frame (same dma-buf)', 0);

    // The capture is also readable as a dma-buf exported from the dumb buffer.
    const exported = device.exportDmabuf(dumb.handle);
    try {
      const exportedMap = fd.mmap(exported, 0, dumb.size);
      try {
        assert.equal(Buffer.compare(new Uint8Array(exportedMap), new Uint8Array(captured)), 0);
      } finally {
        fd.munmap(exportedMap);
      }
    } finally {
      fd.close(exported);
    }

    // A non-blocking flip reports completion as an event carrying our user data.
    const flip = new AtomicRequest().set(crtc, 'ACTIVE', 1).set(primary, 'FB_ID', scanoutFb);
    device.commit(flip, AtomicFlag.NONBLOCK | AtomicFlag.PAGE_FLIP_EVENT, 0xfeedn);
    await waitReadable(device.fd, FENCE_GUARD_MS);
    const events = device.readEvents();
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, DRM_EVENT_FLIP_COMPLETE);
    assert.equal(events[0]!.userData, 0xfeedn);
    assert.equal(events[0]!.crtcId, crtc.id);
    assert.deepEqual(device.readEvents(), [], 'nothing more queued');

    // Switch the display off before taking the buffers away.
    const off = new AtomicRequest()
      .set(primary, 'FB_ID', 0)
      .set(primary, 'CRTC_ID', 0)
      .set(writeback, 'CRTC_ID', 0)
      .set(crtc, 'ACTIVE', 0)
      .set(crtc, 'MODE_ID', 0);
    device.commit(off, AtomicFlag.ALLOW_MODESET);
  } finally {
    cleanup();
  }
  assert.equal(fd.openFdCount(), baseline, 'every fd the test opened was closed');
});
