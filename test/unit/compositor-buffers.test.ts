import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DmaBufSync, fd, Seal } from '../../native/fd.js';
import { CompiledFeedback, encodeFormatTable } from '../../examples/compositor/dmabuf/feedback.js';
import { DmabufParams } from '../../examples/compositor/dmabuf/params.js';
import { Fourcc, defaultDmabufFormats } from '../../examples/compositor/dmabuf/formats.js';
import { DmabufBuffer, type DmabufFdOps } from '../../examples/compositor/buffers/dmabuf-buffer.js';
import { ShmError, ShmPool, ShmProtocolError } from '../../examples/compositor/buffers/shm-pool.js';

function memfdWith(bytes: Uint8Array, seals = 0): number {
  const memfd = fd.memfdCreate('compositor-test', true);
  fd.ftruncate(memfd, bytes.byteLength);
  fd.pwrite(memfd, bytes, 0);
  if (seals) fd.addSeals(memfd, seals);
  return memfd;
}

test('the format table lives in a sealed, read-only memfd with the table bytes', () => {
  const baseline = fd.openFdCount();
  const feedback = new CompiledFeedback(defaultDmabufFormats(), 0n, fd);
  const expected = encodeFormatTable(defaultDmabufFormats());
  assert.equal(fd.fdSize(feedback.tableFd), expected.byteLength);
  assert.equal(fd.getSeals(feedback.tableFd), Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
  const read = new Uint8Array(expected.byteLength);
  fd.pread(feedback.tableFd, read, 0);
  assert.deepEqual(read, expected);
  assert.throws(() => fd.pwrite(feedback.tableFd, new Uint8Array([1]), 0), { code: 'EPERM' });
  assert.throws(() => fd.ftruncate(feedback.tableFd, 0), { code: 'EPERM' });
  assert.throws(() => fd.mmap(feedback.tableFd, 0, expected.byteLength, true), { code: 'EPERM' });
  feedback.destroy();
  assert.equal(fd.openFdCount(), baseline);
});

test('params validation sizes real fds with lseek; a memfd import reads back its pixels', () => {
  const baseline = fd.openFdCount();
  const width = 4;
  const height = 3;
  const pixels = new Uint8Array(width * height * 4);
  new Uint32Array(pixels.buffer).forEach((_, i, words) => (words[i] = 0x00102030 + i));
  const params = new DmabufParams(defaultDmabufFormats(), fd);
  assert.ok(params.add(memfdWith(pixels, Seal.SHRINK), 0, 0, width * 4, 0, 0).ok);
  const result = params.create(width, height, Fourcc.XRGB8888, 0);
  assert.ok(result.ok);
  const buffer = new DmabufBuffer(result.attributes, fd);
  const planes = buffer.beginRead();
  assert.ok(planes, buffer.lastError ?? '');
  assert.deepEqual(planes[0].bytes.subarray(0, pixels.byteLength), pixels);
  buffer.endRead();
  buffer.destroy();
  params.destroy();
  assert.equal(fd.openFdCount(), baseline);

  const tooSmall = new DmabufParams(defaultDmabufFormats(), fd);
  tooSmall.add(memfdWith(pixels.subarray(4)), 0, 0, width * 4, 0, 0);
  const failed = tooSmall.create(width, height, Fourcc.XRGB8888, 0);
  assert.ok(!failed.ok && failed.fatal && failed.code === 6);
  tooSmall.destroy();
  assert.equal(fd.openFdCount(), baseline);
});

test('a dma-buf memfd that shrinks after import is not read (no SIGBUS)', () => {
  const baseline = fd.openFdCount();
  const memfd = memfdWith(new Uint8Array(64 * 4));
  const params = new DmabufParams(defaultDmabufFormats(), fd);
  params.add(fd.dup(memfd), 0, 0, 64, 0, 0);
  const result = params.create(16, 4, Fourcc.XRGB8888, 0);
  assert.ok(result.ok);
  const buffer = new DmabufBuffer(result.attributes, fd);
  assert.ok(buffer.beginRead());
  buffer.endRead();
  fd.ftruncate(memfd, 16);
  assert.equal(buffer.beginRead(), null);
  buffer.destroy();
  fd.close(memfd);
  assert.equal(fd.openFdCount(), baseline);
});

test('wl_shm pools: bounds checks give the protocol errors; pools only grow', () => {
  const baseline = fd.openFdCount();
  const size = 16 * 16 * 4;
  const pool = new ShmPool(memfdWith(new Uint8Array(size)), size, fd);
  const expectError = (code: number, run: () => unknown) =>
    assert.throws(run, (e: unknown) => e instanceof ShmProtocolError && e.code === code);
  expectError(ShmError.INVALID_FORMAT, () => pool.createBuffer(0, 16, 16, 64, Fourcc.NV12));
  expectError(ShmError.INVALID_FORMAT, () => pool.createBuffer(0, 16, 16, 64, 0x12345678));
  expectError(ShmError.INVALID_STRIDE, () => pool.createBuffer(0, 16, 16, 63, Fourcc.XRGB8888));
  expectError(ShmError.INVALID_STRIDE, () => pool.createBuffer(4, 16, 16, 64, Fourcc.XRGB8888));
  expectError(ShmError.INVALID_STRIDE, () => pool.createBuffer(0, 0, 16, 64, Fourcc.XRGB8888));
  expectError(ShmError.INVALID_STRIDE, () =>
    pool.createBuffer(0, 16, 0x7fffffff, 0x7fffffff, Fourcc.XRGB8888),
  );
  expectError(ShmError.INVALID_STRIDE, () => pool.resize(size - 1));
  expectError(ShmError.INVALID_FD, () => pool.resize(size * 2)); // file is not that big
  const buffer = pool.createBuffer(0, 16, 16, 64, Fourcc.XRGB8888);
  pool.release(); // wl_shm_pool.destroy: the buffer keeps the pool
  const target = new Uint8Array(16 * 16 * 4);
  assert.ok(buffer.copyArea({ x: 0, y: 0, width: 16, height: 16 }, 4, target, 64));
  buffer.destroy();
  assert.equal(fd.openFdCount(), baseline);
  expectError(ShmError.INVALID_FD, () => new ShmPool(memfdWith(new Uint8Array(8)), 64, fd));
  assert.equal(fd.openFdCount(), baseline, 'a rejected pool closes its fd');
});

test('an unsealed wl_shm pool is never mapped: reads use pread, and a truncated pool reads short instead of faulting', () => {
  const baseline = fd.openFdCount();
  const pixels = new Uint8Array(16 * 8 * 4).map((_, i) => i & 0xff);
  const memfd = memfdWith(pixels);
  const truncator = fd.dup(memfd); // the client's own fd
  const pool = new ShmPool(memfd, pixels.byteLength, fd);
  assert.equal(pool.sealedAgainstShrink, false);
  const buffer = pool.createBuffer(0, 16, 8, 64, Fourcc.XRGB8888);
  assert.equal(buffer.beginRead(), null, 'no mapping is handed out');
  // A 2x3 area at (5,4), packed into a target with its own stride.
  const target = new Uint8Array(16 * 8 * 4);
  assert.ok(buffer.copyArea({ x: 5, y: 4, width: 2, height: 3 }, 4, target, 64));
  for (let y = 4; y < 7; y++) {
    const at = y * 64 + 5 * 4;
    assert.deepEqual(target.subarray(at, at + 8), pixels.subarray(at, at + 8));
  }
  assert.equal(target[0], 0, 'outside the area nothing is written');
  fd.ftruncate(truncator, 100);
  assert.equal(buffer.copyArea({ x: 0, y: 0, width: 16, height: 8 }, 4, target, 64), false);
  buffer.destroy();
  pool.release();
  fd.close(truncator);

  const sealed = new ShmPool(memfdWith(pixels, Seal.SHRINK), pixels.byteLength, fd);
  assert.equal(sealed.sealedAgainstShrink, true);
  const mapped = sealed.createBuffer(0, 16, 8, 64, Fourcc.XRGB8888);
  assert.ok(mapped.beginRead(), 'a pool sealed against shrinking is read through its mapping');
  mapped.destroy();
  sealed.release();
  assert.equal(fd.openFdCount(), baseline);
});

test('a dma-buf plane deep inside a large fd maps only its span and reads the right bytes', () => {
  const baseline = fd.openFdCount();
  const offset = 3 * 65536 + 4100; // not page aligned
  const memfd = memfdWith(new Uint8Array(8 * 65536));
  const pixels = new Uint8Array(8 * 4 * 2).map((_, i) => i + 1);
  fd.pwrite(memfd, pixels, offset);
  const params = new DmabufParams(defaultDmabufFormats(), fd);
  params.add(memfd, 0, offset, 8 * 4, 0, 0);
  const result = params.create(8, 2, Fourcc.XRGB8888, 0);
  assert.ok(result.ok);
  const buffer = new DmabufBuffer(result.attributes, fd);
  const planes = buffer.beginRead();
  assert.ok(planes, buffer.lastError ?? '');
  const [plane] = planes;
  assert.ok(plane.bytes.byteLength < 65536 + pixels.byteLength + 4100, 'not the whole fd');
  assert.deepEqual(plane.bytes.subarray(plane.offset, plane.offset + pixels.byteLength), pixels);
  buffer.endRead();
  buffer.destroy();
  params.destroy();
  assert.equal(fd.openFdCount(), baseline);
});

test('dma-buf reads are bracketed by DMA_BUF_IOCTL_SYNC; a file that is no dma-buf (ENOTTY) is read with pread, never mapped', () => {
  const calls: string[] = [];
  const bytes = new ArrayBuffer(64);
  let fileSize = 64;
  const makeOps = (syncError: string | null): DmabufFdOps => ({
    fdSize: () => fileSize,
    getSeals: () => {
      throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' }); // not a memfd
    },
    pread: (_fd, target, position) => {
      calls.push(`pread ${position} ${target.byteLength}`);
      const n = Math.max(0, Math.min(target.byteLength, fileSize - position));
      target.fill(7, 0, n);
      return n;
    },
    mmap: (_fd, offset, length) => (calls.push(`mmap ${offset} ${length}`), bytes),
    munmap: () => void calls.push('munmap'),
    dmabufSync: (_fd, flags) => {
      calls.push(`sync ${flags}`);
      if (syncError) throw Object.assign(new Error(syncError), { code: syncError });
    },
    close: (fdNumber) => void calls.push(`close ${fdNumber}`),
  });
  const attributes = () => ({
    width: 4,
    height: 4,
    format: Fourcc.XRGB8888,
    modifier: 0n,
    flags: 0,
    planes: [{ fd: 42, offset: 0, stride: 16 }],
  });
  const START_READ = DmaBufSync.START | DmaBufSync.READ;
  const END_READ = DmaBufSync.END | DmaBufSync.READ;

  const real = new DmabufBuffer(attributes(), makeOps(null));
  assert.ok(real.beginRead());
  real.endRead();
  assert.ok(real.beginRead());
  real.endRead();
  real.destroy();
  assert.deepEqual(calls.splice(0), [
    `sync ${START_READ}`, // the probe: this fd is a dma-buf
    `sync ${END_READ}`,
    'mmap 0 64',
    `sync ${START_READ}`,
    `sync ${END_READ}`,
    `sync ${START_READ}`,
    `sync ${END_READ}`,
    'munmap',
    'close 42',
  ]);

  const plainFile = new DmabufBuffer(attributes(), makeOps('ENOTTY'));
  const unreadable: string[] = [];
  plainFile.onUnreadable = (message) => unreadable.push(message);
  const planes = plainFile.beginRead();
  assert.ok(planes, 'ENOTTY is not an error');
  assert.deepEqual([...planes[0].bytes], new Array(64).fill(7));
  plainFile.endRead();
  fileSize = 40; // the owner truncated it: a short read, not a fault
  assert.equal(plainFile.beginRead(), null);
  assert.match(unreadable[0] ?? '', /holds 40 of the 64 bytes/);
  plainFile.destroy();
  assert.deepEqual(calls.splice(0), [
    `sync ${START_READ}`,
    'pread 0 64',
    'pread 0 64',
    'pread 40 24',
    'close 42',
  ]);
  fileSize = 64;

  const failing = new DmabufBuffer(attributes(), makeOps('EIO'));
  assert.equal(failing.beginRead(), null, 'other sync errors make the buffer unreadable');
  assert.match(failing.lastError ?? '', /EIO/);
  failing.destroy();
});
