import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  DrmFormat,
  FormatSet,
} from '../../plugin/common/formats.js';
import {
  backingBeyondFds,
  coalesceRanges,
  planDmabuf,
  planShm,
  validateGuestBuffer,
  type GuestBuffer,
} from '../../plugin/present/plan.js';

const PAGE = 4096;

function buffer(overrides: Partial<GuestBuffer> = {}): GuestBuffer {
  return {
    width: 64,
    height: 64,
    stride: 256,
    offset: 0,
    format: DrmFormat.XRGB8888,
    modifier: DRM_FORMAT_MOD_LINEAR,
    ranges: [{ fd: 5, offset: PAGE, length: 4 * PAGE }],
    ...overrides,
  };
}

const shmFormats = new Set([DrmFormat.XRGB8888, DrmFormat.ARGB8888]);

test('geometry validation catches hostile buffers', () => {
  assert.equal(validateGuestBuffer(buffer()), null);
  assert.match(validateGuestBuffer(buffer({ width: 0 })) ?? '', /width/);
  assert.match(validateGuestBuffer(buffer({ height: 1e9 })) ?? '', /height/);
  assert.match(validateGuestBuffer(buffer({ stride: 100 })) ?? '', /stride 100 is below/);
  assert.match(validateGuestBuffer(buffer({ offset: 1 })) ?? '', /needs 16385 bytes/);
  assert.match(validateGuestBuffer(buffer({ ranges: [] })) ?? '', /no backing/);
  assert.match(
    validateGuestBuffer(buffer({ ranges: [{ fd: 5, offset: 0, length: -4 }] })) ?? '',
    /range length/,
  );
  assert.match(
    validateGuestBuffer(
      buffer({
        ranges: [
          { fd: 5, offset: 0, length: Number.MAX_SAFE_INTEGER },
          { fd: 5, offset: 0, length: Number.MAX_SAFE_INTEGER },
        ],
      }),
    ) ?? '',
    /overflows/,
  );
  // The last row needs only its pixels, not a full stride.
  assert.equal(
    validateGuestBuffer(
      buffer({ stride: 512, ranges: [{ fd: 5, offset: 0, length: 512 * 63 + 256 }] }),
    ),
    null,
  );
});

test('adjacent ranges of one memfd coalesce, others do not', () => {
  const merged = coalesceRanges([
    { fd: 5, offset: 0, length: PAGE },
    { fd: 5, offset: PAGE, length: 2 * PAGE },
    { fd: 5, offset: 5 * PAGE, length: PAGE },
    { fd: 6, offset: 6 * PAGE, length: PAGE },
    { fd: 6, offset: 7 * PAGE, length: PAGE },
  ]);
  assert.deepEqual(merged, [
    { fd: 5, offset: 0, length: 3 * PAGE },
    { fd: 5, offset: 5 * PAGE, length: PAGE },
    { fd: 6, offset: 6 * PAGE, length: 2 * PAGE },
  ]);
});

test('the dma-buf path needs udmabuf and an advertised format/modifier', () => {
  const advertised = new FormatSet();
  advertised.add(DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR);
  assert.deepEqual(planDmabuf(buffer(), advertised, null), {
    path: 'dmabuf',
    modifier: DRM_FORMAT_MOD_LINEAR,
  });
  assert.deepEqual(planDmabuf(buffer(), advertised, 'no /dev/udmabuf'), {
    path: 'refused',
    reason: 'no /dev/udmabuf',
  });
  const refused = planDmabuf(buffer({ format: DrmFormat.ABGR8888 }), advertised, null);
  assert.equal(refused.path, 'refused');
  assert.match((refused as { reason: string }).reason, /AB24/);
  assert.match(
    (planDmabuf(buffer(), null, null) as { reason: string }).reason,
    /no zwp_linux_dmabuf_v1/,
  );
  // Only INVALID advertised: a linear buffer goes with the implicit modifier.
  const implicit = new FormatSet();
  implicit.add(DrmFormat.XRGB8888, DRM_FORMAT_MOD_INVALID);
  assert.deepEqual(planDmabuf(buffer(), implicit, null), {
    path: 'dmabuf',
    modifier: DRM_FORMAT_MOD_INVALID,
  });
});

test('a wl_shm pool on the backing fd ends at the framebuffer and shows guest RAM only on opt-in', () => {
  // 63 rows of 256 bytes at byte 128 of a span at page 1: the framebuffer ends at
  // PAGE + 128 + 63 * 256, well before the span (and the fd) does.
  const contiguous = buffer({
    offset: 128,
    height: 63,
    ranges: [
      { fd: 5, offset: PAGE, length: 2 * PAGE },
      { fd: 5, offset: 3 * PAGE, length: 2 * PAGE },
    ],
  });
  const framebufferEnd = PAGE + 128 + 63 * 256;

  // Guest RAM: the pool would show the compositor bytes 0..PAGE+128 of it: copied instead.
  const guarded = planShm(contiguous, 'no /dev/udmabuf', shmFormats);
  assert.equal(guarded.path, 'shm-copy');
  assert.match(
    guarded.reason,
    /^no \/dev\/udmabuf; contiguous backing at byte 4224 of guest RAM .*shmOnGuestRam allows it\): copying damaged rects/,
  );

  for (const [variant, plan] of [
    ['opt-in', planShm(contiguous, 'no /dev/udmabuf', shmFormats, { shmOnGuestRam: true })],
    ['BAR', planShm({ ...contiguous, displayMemoryOnly: true }, 'no /dev/udmabuf', shmFormats)],
  ] as const) {
    assert.equal(plan.path, 'shm-direct', variant);
    if (plan.path !== 'shm-direct') return;
    assert.equal(plan.memfd, 5);
    assert.equal(plan.poolSize, framebufferEnd, `${variant}: nothing past the last row`);
    assert.equal(plan.bufferOffset, PAGE + 128);
    assert.equal(plan.shmFormat, 1);
    assert.match(plan.reason, /^no \/dev\/udmabuf; contiguous backing: wl_shm on/);
  }

  // A framebuffer at byte 0 of its fd: the pool is exactly the framebuffer, no opt-in needed.
  const atZero = planShm(
    buffer({ ranges: [{ fd: 5, offset: 0, length: 8 * PAGE }] }),
    'r',
    shmFormats,
  );
  assert.equal(atZero.path, 'shm-direct');
  if (atZero.path === 'shm-direct') assert.equal(atZero.poolSize, 64 * 256);
});

test('scattered backing, short last rows and far offsets copy', () => {
  const scattered = planShm(
    buffer({
      ranges: [
        { fd: 5, offset: 8 * PAGE, length: 2 * PAGE },
        { fd: 5, offset: 0, length: 2 * PAGE },
      ],
    }),
    'no /dev/udmabuf',
    shmFormats,
  );
  assert.equal(scattered.path, 'shm-copy');
  assert.match(scattered.reason, /2 backing spans: copying damaged rects/);
  const beyond = planShm(
    buffer({ ranges: [{ fd: 5, offset: 2 ** 31, length: 4 * PAGE }] }),
    'r',
    shmFormats,
  );
  assert.equal(beyond.path, 'shm-copy');
  const shortRow = planShm(
    buffer({ stride: 512, ranges: [{ fd: 5, offset: 0, length: 512 * 63 + 256 }] }),
    'r',
    shmFormats,
  );
  assert.equal(shortRow.path, 'shm-copy');
});

test('formats and modifiers wl_shm cannot show are unpresentable', () => {
  assert.match(
    planShm(buffer({ modifier: 0x0100000000000001n }), 'r', shmFormats).reason,
    /cannot show modifier 0x0100000000000001/,
  );
  assert.equal(
    planShm(buffer({ format: DrmFormat.XBGR8888 }), 'r', shmFormats).path,
    'unpresentable',
  );
});

test('ranges past the end of their fd are caught before anything maps them', () => {
  const sizes = new Map([
    [5, 8 * PAGE],
    [6, PAGE],
  ]);
  const asked: number[] = [];
  const sizeOf = (fd: number) => {
    asked.push(fd);
    return sizes.get(fd) ?? 0;
  };
  assert.equal(
    backingBeyondFds(
      [
        { fd: 5, offset: 0, length: 4 * PAGE },
        { fd: 5, offset: 4 * PAGE, length: 4 * PAGE },
        { fd: 6, offset: 0, length: PAGE },
      ],
      sizeOf,
    ),
    null,
  );
  assert.deepEqual(asked, [5, 6], 'one size lookup per fd');
  assert.match(
    backingBeyondFds([{ fd: 6, offset: PAGE, length: PAGE }], sizeOf) ?? '',
    /ends past the end of fd 6 \(4096 bytes\)/,
  );
});
