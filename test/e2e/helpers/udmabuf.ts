/**
 * Which path an e2e test must see: the zero-copy dma-buf where this host's /dev/udmabuf opens,
 * else the fallback the test names. Tests assert the one expected path instead of accepting
 * either, so a host with udmabuf that silently falls back fails.
 */
import assert from 'node:assert/strict';
import { coalesceRanges, type BackingRange } from '../../../plugin/common/backing.js';
import { UdmabufExporter } from '../../../plugin/dmabuf/exporter.js';
import type { GuestfbPlugin } from '../../../plugin/index.js';
import type { VhostUserGpuBackend } from '../../../plugin/sources/virtio-gpu/index.js';

let cached: { usable: boolean; reason: string } | undefined;

/** Whether /dev/udmabuf opens here, and why not. */
export function udmabufOnHost(): { usable: boolean; reason: string } {
  if (cached) return cached;
  try {
    UdmabufExporter.open().dispose();
    cached = { usable: true, reason: '/dev/udmabuf opens' };
  } catch (error) {
    cached = { usable: false, reason: (error as Error).message };
  }
  return cached;
}

/** 'dmabuf' where udmabuf works, else `fallback`. */
export function expectedPath<T extends string>(fallback: T): 'dmabuf' | T {
  return udmabufOnHost().usable ? 'dmabuf' : fallback;
}

/**
 * The one path a guest buffer with this backing must take here: the dma-buf where udmabuf works;
 * else wl_shm on the guest memfd when the backing is one contiguous span, else the copy.
 */
export function expectedGuestPath(
  backing: readonly BackingRange[],
): 'dmabuf' | 'shm-direct' | 'shm-copy' {
  if (udmabufOnHost().usable) return 'dmabuf';
  return coalesceRanges(backing).length === 1 ? 'shm-direct' : 'shm-copy';
}

/**
 * Asserts that guestfb's window `title` shows head `head` of `backend` on the one path this host
 * allows (see expectedGuestPath), with the fallback's reason naming udmabuf where it has none and
 * no fallback and no copied byte where it has. Returns a line for the test's diagnostics.
 */
export function assertGuestPath(
  plugin: GuestfbPlugin,
  backend: VhostUserGpuBackend,
  title: string,
  head = 0,
): string {
  const window = plugin.presenter?.windows().find((w) => w.title === title);
  assert.ok(window, `guestfb has a window "${title}"`);
  const scanout = backend.scanout(head);
  assert.ok(scanout, `head ${head} shows a resource`);
  const resource = backend.resource(scanout.resourceId);
  assert.ok(resource, `resource ${scanout.resourceId} exists`);
  const expected = expectedGuestPath(resource.backing);
  const stats = plugin.stats();
  const seen =
    `${title}: path ${window.buffer?.path} (expected ${expected}: ${udmabufOnHost().reason}), ` +
    `${resource.backing.length} backing ranges, ${stats.bytesCopied} bytes copied, ` +
    `fallback ${stats.fallbackReason ?? 'none'}`;
  assert.equal(window.buffer?.path, expected, seen);
  if (expected === 'dmabuf') {
    assert.equal(stats.fallbackReason, null, seen);
    assert.equal(stats.bytesCopied, 0, seen);
    assert.ok(stats.dmabufsLive > 0, seen);
  } else {
    assert.match(stats.fallbackReason ?? '', /udmabuf/, seen);
  }
  return seen;
}
