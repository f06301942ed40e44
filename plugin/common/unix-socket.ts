/**
 * Listening sockets that QEMU connects to (vhost-user, ivshmem): who may connect, and never
 * taking over another process's socket.
 *
 * Whoever connects first to a vhost-user socket becomes the front-end (it sends memory tables
 * guestfb maps); whoever connects to the ivshmem socket gets the BAR memfd. So the socket file
 * is the owner's only by default (0600), set before bind() so it never exists wider; a group
 * and a wider mode are explicit (`SocketAccess`). An existing file at the path is probed: a
 * live listener is refused ("in use by another process"), a stale socket (ECONNREFUSED) is
 * removed, anything that is not a socket is refused.
 */
import fs from 'node:fs';
import type { FdAddon } from '../../native/fd.js';

/** Who may connect to a socket guestfb listens on. */
export interface SocketAccess {
  /** Permission bits of the socket file (default 0o600: the owner only). Connecting needs
   * write permission. */
  mode?: number;
  /** Group of the socket file: a group name or a gid (default: the process's group). */
  group?: string | number;
}

export const DEFAULT_SOCKET_MODE = 0o600;

export class SocketInUseError extends Error {
  override name = 'SocketInUseError';
  constructor(readonly path: string) {
    super(`${path} is in use by another process`);
  }
}

/** The mode and gid to apply (gid null: leave the group as bind() made it). Throws RangeError. */
export function resolveSocketAccess(
  fd: Pick<FdAddon, 'groupId'>,
  access: SocketAccess = {},
): { mode: number; gid: number | null } {
  const mode = access.mode ?? DEFAULT_SOCKET_MODE;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new RangeError(`socket mode ${String(mode)} is not a permission mode 0..0777`);
  }
  const group = access.group;
  if (group === undefined) return { mode, gid: null };
  if (typeof group === 'number' || /^\d+$/.test(group)) {
    const gid = Number(group);
    if (!Number.isInteger(gid) || gid < 0 || gid > 0xfffffffe) {
      throw new RangeError(`socket group ${String(group)} is not a gid`);
    }
    return { mode, gid };
  }
  const gid = fd.groupId(group);
  if (gid === null) throw new RangeError(`socket group "${group}" does not exist`);
  return { mode, gid };
}

/**
 * Makes `path` free for a new socket: nothing there, or a stale socket (removed). Throws
 * SocketInUseError when a process listens on it, and an Error for a path that is not a socket.
 */
export function claimSocketPath(fd: Pick<FdAddon, 'unixProbe'>, path: string): void {
  let stat;
  try {
    stat = fs.lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; not replacing it`);
  const status = fd.unixProbe(path);
  if (status === 'OK' || status === 'EAGAIN' || status === 'EINPROGRESS') {
    throw new SocketInUseError(path);
  }
  if (status === 'ENOENT') return; // removed since the lstat
  if (status !== 'ECONNREFUSED') {
    throw new Error(`${path}: cannot tell whether it is in use (connect: ${status})`);
  }
  fs.unlinkSync(path); // left over by a process that died without removing it
}

/** A listening socket and its file. */
export interface ListeningSocket {
  /** The listening fd (owned by this object). */
  readonly fd: number;
  readonly path: string;
  /** Closes the fd and removes the file if it is still this socket's. Idempotent. */
  close(): void;
}

/**
 * Listens on `path` (claimed first, see claimSocketPath) with the access asked for. The file is
 * created owner-only (the group's and others' bits cleared before bind), then given its group
 * and exact mode. On failure nothing is left open and the file is removed.
 */
export function listenUnixSocket(
  fd: Pick<FdAddon, 'unixListen' | 'unixProbe' | 'groupId' | 'close'>,
  path: string,
  backlog: number,
  access?: SocketAccess,
): ListeningSocket {
  const { mode, gid } = resolveSocketAccess(fd, access);
  claimSocketPath(fd, path);
  const listenFd = fd.unixListen(path, backlog, mode & 0o700);
  let stat;
  try {
    stat = fs.lstatSync(path);
    if (gid !== null && stat.gid !== gid) fs.lchownSync(path, -1, gid);
    // bind() applied the umask too; set the exact bits (after the group, so a wider mode
    // never applies to the wrong group).
    if ((stat.mode & 0o7777) !== mode || gid !== null) fs.chmodSync(path, mode);
  } catch (error) {
    fd.close(listenFd);
    removeIfSame(path, stat);
    throw new Error(`${path}: setting the socket's access failed: ${(error as Error).message}`);
  }
  let closed = false;
  const created = stat;
  return {
    fd: listenFd,
    path,
    close: () => {
      if (closed) return;
      closed = true;
      fd.close(listenFd);
      removeIfSame(path, created);
    },
  };
}

/** Unlinks `path` when it is still the file `stat` describes (never another process's socket). */
function removeIfSame(path: string, stat: fs.Stats | undefined): void {
  try {
    const now = fs.lstatSync(path);
    if (stat && now.ino === stat.ino && now.dev === stat.dev) fs.unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Parses an octal mode as typed on a command line ("600", "0660", "0o660"); NaN if invalid. */
export function parseSocketMode(text: string): number {
  const match = /^(?:0o?)?([0-7]{1,4})$/.exec(text);
  if (!match) return NaN;
  const mode = parseInt(match[1]!, 8);
  return mode <= 0o777 ? mode : NaN;
}
