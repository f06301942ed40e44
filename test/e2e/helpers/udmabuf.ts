/**
 * Which path an e2e test must see: the zero-copy dma-buf where this host's /dev/udmabuf opens,
 * else the fallback the test names. Tests assert the one expected path instead of accepting
 * either, so a host with udmabuf that silently falls back fails.
 */
import { UdmabufExporter } from '../../../plugin/dmabuf/exporter.js';

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
