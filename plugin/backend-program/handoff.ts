/**
 * One guestfb for every VM: the back-end program libvirt starts per domain hands its vhost-user
 * socket to the user's running guestfb over a control socket, so every domain's windows come
 * from one process (one set of limits and statistics).
 *
 * Control socket: $XDG_RUNTIME_DIR/guestfb/control.sock (folder 0700, socket 0600), or
 * $GUESTFB_CONTROL_SOCKET. Wire format, both directions: u32 little-endian length, then that
 * many bytes of UTF-8 JSON (at most 4096).
 *   helper → guestfb: {"version":1,"type":"gpu","name":"DOMAIN"} with the vhost-user socket
 *                     attached (SCM_RIGHTS, exactly one fd)
 *   guestfb → helper: {"ok":true,"pid":N} or {"ok":false,"error":"..."}
 * guestfb closes the control connection when the domain's session ends; the helper (which
 * libvirt watches through its pid file) exits then.
 *
 * guestfb only takes connections from its own uid or root (SO_PEERCRED), bounds the number of
 * handshakes in flight and of domains, and drops a handshake that takes longer than a timeout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fd as fdModule, type FdAddon } from '../../native/fd.js';

export const PROTOCOL_VERSION = 1;
export const MAX_MESSAGE_BYTES = 4096;
const HEADER_BYTES = 4;

export interface HandoffRequest {
  /** vhost-user device type ("gpu", "input"). */
  type: string;
  /** The domain's name (window titles). */
  name: string;
}

export type HandoffReply = { ok: true; pid: number } | { ok: false; error: string };

/** The control socket path guestfb listens on, or null without XDG_RUNTIME_DIR. */
export function controlSocketPath(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.GUESTFB_CONTROL_SOCKET) return env.GUESTFB_CONTROL_SOCKET;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'guestfb', 'control.sock');
  return null;
}

/**
 * Control sockets a helper tries, in order: the one its environment names, else (root without
 * XDG_RUNTIME_DIR: the system libvirt daemon's helpers) every user's under /run/user.
 */
export function controlSocketCandidates(
  env: NodeJS.ProcessEnv = process.env,
  uid: number = process.getuid?.() ?? -1,
  runUser = '/run/user',
): string[] {
  const own = controlSocketPath(env);
  if (own) return [own];
  if (uid !== 0) return [];
  let users: string[];
  try {
    users = fs.readdirSync(runUser).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return users
    .sort((a, b) => Number(a) - Number(b))
    .map((user) => path.join(runUser, user, 'guestfb', 'control.sock'))
    .filter((candidate) => fs.existsSync(candidate));
}

/** Frames one message: u32 LE length + JSON. */
export function encodeMessage(value: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > MAX_MESSAGE_BYTES) throw new RangeError('control message too long');
  const frame = Buffer.alloc(HEADER_BYTES + body.length);
  frame.writeUInt32LE(body.length, 0);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/**
 * Accumulates bytes of one framed message. Returns the parsed JSON once complete, undefined
 * while incomplete; throws on a length over the limit, bad JSON or bytes after the message.
 */
export class MessageReader {
  private buffer = Buffer.alloc(0);

  push(data: Uint8Array): unknown {
    this.buffer = Buffer.concat([this.buffer, data]);
    if (this.buffer.length < HEADER_BYTES) return undefined;
    const length = this.buffer.readUInt32LE(0);
    if (length > MAX_MESSAGE_BYTES)
      throw new Error(`message of ${length} bytes (limit ${MAX_MESSAGE_BYTES})`);
    if (this.buffer.length < HEADER_BYTES + length) return undefined;
    if (this.buffer.length > HEADER_BYTES + length) throw new Error('bytes after the message');
    return JSON.parse(this.buffer.subarray(HEADER_BYTES).toString('utf8')) as unknown;
  }

  /** Bytes still wanted (so a read never takes more than one message). */
  wanted(): number {
    if (this.buffer.length < HEADER_BYTES) return HEADER_BYTES - this.buffer.length;
    return Math.max(1, HEADER_BYTES + this.buffer.readUInt32LE(0) - this.buffer.length);
  }
}

/** Validates a helper's request; throws with the reason. */
export function parseRequest(value: unknown): HandoffRequest {
  if (typeof value !== 'object' || value === null) throw new Error('request is not an object');
  const request = value as Record<string, unknown>;
  if (request.version !== PROTOCOL_VERSION) {
    throw new Error(
      `protocol version ${String(request.version)} (guestfb speaks ${PROTOCOL_VERSION})`,
    );
  }
  if (typeof request.type !== 'string' || !/^[a-z0-9-]{1,32}$/.test(request.type)) {
    throw new Error('request names no device type');
  }
  if (typeof request.name !== 'string' || request.name.length === 0 || request.name.length > 200) {
    throw new Error('request names no domain (1..200 characters)');
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(request.name))
    throw new Error('domain name has control characters');
  return { type: request.type, name: request.name };
}

export interface HandedDomain extends HandoffRequest {
  /** The connected vhost-user socket (owned by `accept` when it accepts). */
  fd: number;
  peer: { pid: number; uid: number; gid: number };
}

export interface HandoffServerOptions {
  /** Socket path (default: controlSocketPath()). */
  path?: string;
  /**
   * Takes a domain: returns null and takes `domain.fd` (calling `end` once its session is over),
   * or returns why it refuses (the server closes the fd and tells the helper).
   */
  accept: (domain: HandedDomain, end: () => void) => string | null;
  log?: (message: string) => void;
  /** Domains at once (default 32). */
  maxDomains?: number;
  /** Handshakes in flight (default 8). */
  maxPending?: number;
  /** A handshake must complete within this (default 5000 ms). */
  handshakeTimeoutMs?: number;
  fdModule?: FdAddon;
}

interface Connection {
  conn: number;
  stopWatch: (() => void) | null;
  timer: ReturnType<typeof setTimeout> | null;
  reader: MessageReader;
  vhostFd: number | null;
  peer: { pid: number; uid: number; gid: number };
  /** True once a domain was accepted on it. */
  active: boolean;
  closed: boolean;
}

/** Makes sure `dir` is a folder only this uid can enter (creating it 0700). */
function privateFolder(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory()) throw new Error(`${dir} is not a folder`);
  if (uid !== undefined && stat.uid !== uid)
    throw new Error(`${dir} belongs to uid ${stat.uid}, not ${uid}`);
  if ((stat.mode & 0o077) !== 0) {
    throw new Error(`${dir} is open to others (mode ${(stat.mode & 0o777).toString(8)}; want 700)`);
  }
}

export class HandoffServer {
  readonly path: string;
  private readonly fd: FdAddon;
  private readonly log: (message: string) => void;
  private readonly connections = new Set<Connection>();
  private listenFd: number;
  private stopListen: (() => void) | null;
  private readonly uid = process.getuid?.() ?? 0;
  private closed = false;
  /** Counters for statistics and tests. */
  readonly counters = { accepted: 0, refused: 0, rejectedPeers: 0, failedHandshakes: 0 };

  constructor(private readonly options: HandoffServerOptions) {
    const socketPath = options.path ?? controlSocketPath();
    if (!socketPath) throw new Error('no control socket path: XDG_RUNTIME_DIR is not set');
    this.path = socketPath;
    this.fd = options.fdModule ?? fdModule;
    this.log = options.log ?? ((message) => process.stderr.write(`guestfb: ${message}\n`));
    privateFolder(path.dirname(socketPath));
    this.removeStaleSocket();
    this.listenFd = this.fd.unixListen(socketPath, 16);
    try {
      fs.chmodSync(socketPath, 0o600);
    } catch (error) {
      this.fd.close(this.listenFd);
      throw error;
    }
    this.stopListen = this.fd.watchReadable(this.listenFd, (error) => {
      if (error) this.log(`control socket failed: ${error.message}; no more VMs are accepted`);
      else this.acceptAll();
    });
  }

  /** Refuses to take over a socket another live guestfb listens on; removes a dead one. */
  private removeStaleSocket(): void {
    let stat;
    try {
      stat = fs.lstatSync(this.path);
    } catch {
      return;
    }
    if (!stat.isSocket()) throw new Error(`${this.path} exists and is not a socket`);
    let probe: number;
    try {
      probe = this.fd.unixConnect(this.path);
    } catch {
      fs.unlinkSync(this.path); // nobody listens: left over by a guestfb that was killed
      return;
    }
    this.fd.close(probe);
    throw new Error(`another guestfb already accepts VMs on ${this.path}`);
  }

  /** Domains whose sessions are running. */
  get domains(): number {
    let count = 0;
    for (const connection of this.connections) if (connection.active) count++;
    return count;
  }

  private get pending(): number {
    return this.connections.size - this.domains;
  }

  private acceptAll(): void {
    for (;;) {
      let conn: number;
      try {
        conn = this.fd.unixAccept(this.listenFd);
      } catch (error) {
        this.log(`control socket: accept failed: ${String(error)}`);
        return;
      }
      if (conn < 0) return;
      let peer;
      try {
        peer = this.fd.peerCredentials(conn);
      } catch (error) {
        this.fd.close(conn);
        this.log(`control socket: no peer credentials: ${String(error)}`);
        continue;
      }
      if (peer.uid !== this.uid && peer.uid !== 0) {
        this.counters.rejectedPeers++;
        this.log(
          `control socket: refused pid ${peer.pid} of uid ${peer.uid} (only uid ${this.uid} and root)`,
        );
        this.fd.close(conn);
        continue;
      }
      if (this.pending >= (this.options.maxPending ?? 8)) {
        this.counters.failedHandshakes++;
        this.log(`control socket: too many handshakes in flight; refused pid ${peer.pid}`);
        this.fd.close(conn);
        continue;
      }
      this.startHandshake(conn, peer);
    }
  }

  private startHandshake(conn: number, peer: Connection['peer']): void {
    const connection: Connection = {
      conn,
      stopWatch: null,
      timer: null,
      reader: new MessageReader(),
      vhostFd: null,
      peer,
      active: false,
      closed: false,
    };
    this.connections.add(connection);
    connection.timer = setTimeout(
      () => this.fail(connection, 'handshake timed out'),
      this.options.handshakeTimeoutMs ?? 5000,
    );
    connection.stopWatch = this.fd.watchReadable(conn, (error) => {
      if (error) this.fail(connection, `poll failed: ${error.message}`);
      else if (connection.active) this.watchActive(connection);
      else this.readHandshake(connection);
    });
  }

  private readHandshake(connection: Connection): void {
    while (!connection.closed && !connection.active) {
      let chunk;
      try {
        chunk = this.fd.unixRecv(connection.conn, connection.reader.wanted());
      } catch (error) {
        this.fail(connection, `receive failed: ${String(error)}`);
        return;
      }
      if (chunk === null) return;
      for (const received of chunk.fds) {
        if (connection.vhostFd === null) connection.vhostFd = received;
        else {
          this.fd.close(received);
          this.fail(connection, 'more than one fd attached');
          return;
        }
      }
      if (chunk.fdsTruncated) {
        this.fail(connection, 'fds were truncated');
        return;
      }
      if (chunk.data.length === 0) {
        this.fail(connection, 'helper hung up during the handshake');
        return;
      }
      let message;
      try {
        message = connection.reader.push(chunk.data);
      } catch (error) {
        this.fail(connection, `bad message: ${(error as Error).message}`);
        return;
      }
      if (message !== undefined) this.complete(connection, message);
    }
  }

  private complete(connection: Connection, message: unknown): void {
    if (connection.timer) clearTimeout(connection.timer);
    connection.timer = null;
    let request: HandoffRequest;
    try {
      request = parseRequest(message);
    } catch (error) {
      this.fail(connection, (error as Error).message);
      return;
    }
    const vhostFd = connection.vhostFd;
    if (vhostFd === null) {
      this.fail(connection, 'no vhost-user socket attached');
      return;
    }
    try {
      const kind = this.fd.socketKind(vhostFd);
      if (!kind.unix || !kind.stream) throw new Error('not an AF_UNIX stream socket');
    } catch (error) {
      this.fail(connection, `attached fd: ${(error as Error).message}`);
      return;
    }
    if (this.domains >= (this.options.maxDomains ?? 32)) {
      this.refuse(connection, `guestfb already shows ${this.domains} domains (the limit)`);
      return;
    }
    connection.vhostFd = null; // from here on `accept` owns it, or we close it below
    let refusal: string | null;
    try {
      refusal = this.options.accept({ ...request, fd: vhostFd, peer: connection.peer }, () =>
        this.close(connection),
      );
    } catch (error) {
      refusal = `internal error: ${(error as Error).message}`;
    }
    if (refusal !== null) {
      this.fd.close(vhostFd);
      this.refuse(connection, refusal);
      return;
    }
    connection.active = true;
    this.counters.accepted++;
    this.log(`${request.name}: ${request.type} handed over by pid ${connection.peer.pid}`);
    this.reply(connection, { ok: true, pid: process.pid });
  }

  /** After the handshake the helper only waits; its hang-up needs nothing but closing our end. */
  private watchActive(connection: Connection): void {
    let chunk;
    try {
      chunk = this.fd.unixRecv(connection.conn, 64);
    } catch {
      chunk = { data: new Uint8Array(0), fds: [] };
    }
    if (chunk === null) return;
    for (const received of chunk.fds) this.fd.close(received);
    if (chunk.data.length === 0) this.closeControl(connection);
  }

  private reply(connection: Connection, reply: HandoffReply): void {
    try {
      this.fd.unixSend(connection.conn, encodeMessage(reply));
    } catch (error) {
      this.log(`control socket: reply to pid ${connection.peer.pid} failed: ${String(error)}`);
    }
  }

  private refuse(connection: Connection, error: string): void {
    this.counters.refused++;
    this.log(`control socket: refused pid ${connection.peer.pid}: ${error}`);
    this.reply(connection, { ok: false, error });
    this.close(connection);
  }

  private fail(connection: Connection, why: string): void {
    if (connection.closed) return;
    this.counters.failedHandshakes++;
    this.log(`control socket: handshake with pid ${connection.peer.pid} failed: ${why}`);
    this.reply(connection, { ok: false, error: why });
    this.close(connection);
  }

  /** Stops watching and closes the control connection (the domain, if any, goes on). */
  private closeControl(connection: Connection): void {
    connection.stopWatch?.();
    connection.stopWatch = null;
    if (connection.timer) clearTimeout(connection.timer);
    connection.timer = null;
    if (connection.conn >= 0) this.fd.close(connection.conn);
    connection.conn = -1;
  }

  private close(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    this.closeControl(connection);
    if (connection.vhostFd !== null) this.fd.close(connection.vhostFd);
    connection.vhostFd = null;
    this.connections.delete(connection);
  }

  /** Stops listening and closes every control connection (domains are the caller's). */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopListen?.();
    this.stopListen = null;
    this.fd.close(this.listenFd);
    this.listenFd = -1;
    for (const connection of [...this.connections]) this.close(connection);
    try {
      fs.unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** The helper's side after a successful handoff. */
export interface HandoffResult {
  /** The guestfb that took the domain. */
  pid: number;
  /** Resolves when guestfb closes the control connection (the domain's session ended). */
  ended: Promise<void>;
  /** Closes the control connection (SIGTERM). */
  close(): void;
}

/**
 * Hands `vhostFd` to the guestfb listening on `socketPath`. Borrows vhostFd (the caller closes
 * its copy after success). Rejects when nobody listens, guestfb refuses, or no reply comes in
 * `timeoutMs`.
 */
export async function handOff(
  socketPath: string,
  request: HandoffRequest,
  vhostFd: number,
  options: { timeoutMs?: number; fdModule?: FdAddon } = {},
): Promise<HandoffResult> {
  const fd = options.fdModule ?? fdModule;
  const conn = fd.unixConnect(socketPath);
  let stopWatch: (() => void) | null = null;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    stopWatch?.();
    stopWatch = null;
    fd.close(conn);
  };
  try {
    const frame = encodeMessage({ version: PROTOCOL_VERSION, ...request });
    let sent = fd.unixSend(conn, frame, [vhostFd]);
    while (sent < frame.length) sent += fd.unixSend(conn, frame.subarray(sent));
  } catch (error) {
    close();
    throw error;
  }
  let endedResolve: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (endedResolve = resolve));
  const reply = await new Promise<HandoffReply>((resolve, reject) => {
    const reader = new MessageReader();
    let replied = false;
    const timer = setTimeout(() => {
      close();
      reject(new Error(`no reply from ${socketPath} within ${options.timeoutMs ?? 5000} ms`));
    }, options.timeoutMs ?? 5000);
    stopWatch = fd.watchReadable(conn, (error) => {
      for (;;) {
        let chunk;
        try {
          if (error) throw error;
          chunk = fd.unixRecv(conn, replied ? 64 : reader.wanted());
        } catch (failure) {
          clearTimeout(timer);
          close();
          if (replied) endedResolve();
          else reject(failure as Error);
          return;
        }
        if (chunk === null) return;
        for (const received of chunk.fds) fd.close(received);
        if (chunk.data.length === 0) {
          clearTimeout(timer);
          close();
          if (replied) endedResolve();
          else reject(new Error('guestfb closed the control connection without a reply'));
          return;
        }
        if (replied) continue; // nothing more is expected; ignore
        let message;
        try {
          message = reader.push(chunk.data);
        } catch (failure) {
          clearTimeout(timer);
          close();
          reject(failure as Error);
          return;
        }
        if (message === undefined) continue;
        clearTimeout(timer);
        replied = true;
        const value = message as Partial<HandoffReply>;
        if (value.ok === true && typeof value.pid === 'number') {
          resolve({ ok: true, pid: value.pid });
        } else {
          close();
          const why =
            value.ok === false && typeof value.error === 'string' ? value.error : 'bad reply';
          reject(new Error(`guestfb refused: ${why}`));
          return;
        }
      }
    });
  });
  if (!reply.ok) throw new Error(reply.error);
  return { pid: reply.pid, ended, close };
}
