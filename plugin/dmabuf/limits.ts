/**
 * udmabuf's limits are module parameters, readable (and settable by root) at run time under
 * /sys/module/udmabuf/parameters. When that folder is absent the kernel's defaults are assumed
 * and the result says so.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_LIST_LIMIT = 1024;
export const DEFAULT_SIZE_LIMIT_MB = 64;
export const UDMABUF_PARAMETERS_DIR = '/sys/module/udmabuf/parameters';

export interface UdmabufLimits {
  /** Most ranges one UDMABUF_CREATE_LIST accepts. */
  listLimit: number;
  /** Most bytes one dma-buf may span (size_limit_mb * 1 MiB). */
  sizeLimitBytes: number;
  sizeLimitMb: number;
  /** Names of the parameters whose default was assumed because they could not be read. */
  assumed: string[];
}

/** A decimal parameter value, or null when missing or not a positive safe integer. */
function readParameter(dir: string, name: string): number | null {
  let text: string;
  try {
    text = readFileSync(path.join(dir, name), 'utf8').trim();
  } catch {
    return null;
  }
  if (!/^[0-9]{1,15}$/.test(text)) return null;
  const value = Number(text);
  return value > 0 ? value : null;
}

export function readUdmabufLimits(dir = UDMABUF_PARAMETERS_DIR): UdmabufLimits {
  const assumed: string[] = [];
  let listLimit = readParameter(dir, 'list_limit');
  if (listLimit === null) {
    listLimit = DEFAULT_LIST_LIMIT;
    assumed.push('list_limit');
  }
  let sizeLimitMb = readParameter(dir, 'size_limit_mb');
  // Bytes must stay a safe integer: 2^33 MB is far above any real setting.
  if (sizeLimitMb === null || sizeLimitMb > 2 ** 33) {
    sizeLimitMb = DEFAULT_SIZE_LIMIT_MB;
    assumed.push('size_limit_mb');
  }
  return { listLimit, sizeLimitMb, sizeLimitBytes: sizeLimitMb * 1024 * 1024, assumed };
}
