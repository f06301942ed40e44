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
  assert.ok(buffer.beginRead());
  buffer.destroy();
  assert.equal(fd.openFdCount(), baseline);
  expectError(ShmError.INVALID_FD, () => new ShmPool(memfdWith(new Uint8Array(8)), 64, fd));
  assert.equal(fd.openFdCount(), baseline, 'a rejected pool closes its fd');
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

test('dma-buf reads are bracketed by DMA_BUF_IOCTL_SYNC; ENOTTY (a memfd) stops the attempts', () => {
  const calls: string[] = [];
  const bytes = new ArrayBuffer(64);
  const makeOps = (syncError: string | null): DmabufFdOps => ({
    fdSize: () => 64,
    getSeals: () => {
      throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' }); // not a memfd
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

  const real = new DmabufBuffer(attributes(), makeOps(null));
  assert.ok(real.beginRead());
  real.endRead();
  assert.ok(real.beginRead());
  real.endRead();
  real.destroy();
  const START_READ = DmaBufSync.START | DmaBufSync.READ;
  const END_READ = DmaBufSync.END | DmaBufSync.READ;
  assert.deepEqual(calls.splice(0), [
    'mmap 0 64',
    `sync ${START_READ}`,
    `sync ${END_READ}`,
    `sync ${START_READ}`,
    `sync ${END_READ}`,
    'munmap',
    'close 42',
  ]);

  const memfdLike = new DmabufBuffer(attributes(), makeOps('ENOTTY'));
  assert.ok(memfdLike.beginRead(), 'ENOTTY is not an error');
  memfdLike.endRead();
  assert.ok(memfdLike.beginRead());
  memfdLike.endRead();
  memfdLike.destroy();
  assert.deepEqual(calls.splice(0), ['mmap 0 64', `sync ${START_READ}`, 'munmap', 'close 42']);

  const failing = new DmabufBuffer(attributes(), makeOps('EIO'));
  assert.equal(failing.beginRead(), null, 'other sync errors make the buffer unreadable');
  assert.match(failing.lastError ?? '', /EIO/);
  failing.destroy();
});
