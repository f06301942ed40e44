/**
 * The socket side of a vhost-user back-end: listen (guestfb creates the socket, QEMU connects),
 * connect (QEMU listens with `server=on`) or fd (an already-connected socket, e.g. the --fd=N
 * libvirt gives a back-end program), one front-end at a time, and a session that reads
 * messages from the connection, hands them to a `VhostUserDevice` and sends its replies.
 * In 'listen' role a new connection is accepted after a disconnect; the socket file is the
 * owner's only unless `socketAccess` says otherwise, an existing live socket at the path is never
 * taken over, and a front-end connecting while a session is live is closed at once (the live
 * session goes on).
 */
import type { FdAddon } from '../../native/fd.js';
import type { Logger } from '../common/log.js';
import {
  listenUnixSocket,
  type ListeningSocket,
  type SocketAccess,
} from '../common/unix-socket.js';
import type { DeviceIo, VhostUserDevice } from './vhost-user-device.js';
import { FrameReader, ProtocolError, requestName } from './vhost-user-protocol.js';

/** A session as the server sees it. */
export interface ServerSession {
  end(reason: string): void;
}

export interface VhostUserServerOptions<S extends ServerSession> {
  /** The socket to listen on or connect to (roles 'listen' and 'connect'). */
  socketPath?: string;
  role: 'listen' | 'connect' | 'fd';
  /** Role 'fd': the connected socket (taken; made non-blocking and close-on-exec). */
  connectedFd?: number;
  fd: FdAddon;
  log: Logger;
  /** Role 'listen': who may connect (default: the owner only, mode 0600). */
  socketAccess?: SocketAccess;
  /** The guest's name in log lines (default: the socket path). */
  name?: string;
  /** Starts a session on a connected socket (takes `conn`); it calls `ended` once when it ends. */
  startSession(conn: number, ended: (reason: string) => void): S;
}

export class VhostUserServer<S extends ServerSession> {
  private listener: ListeningSocket | null = null;
  private stopListenWatch: (() => void) | null = null;
  private current: S | null = null;
  private closed = false;
  /** Front-ends refused because a session was live. */
  refused = 0;

  constructor(private readonly options: VhostUserServerOptions<S>) {
    if (options.role === 'fd') {
      if (options.connectedFd === undefined) throw new RangeError("role 'fd' needs connectedFd");
      options.fd.adoptFd(options.connectedFd);
      this.startSession(options.connectedFd);
    } else if (options.socketPath === undefined) {
      throw new RangeError(`role '${options.role}' needs socketPath`);
    } else if (options.role === 'listen') {
      this.listen(options.socketPath);
    } else if (options.role === 'connect') {
      this.startSession(options.fd.unixConnect(options.socketPath));
    } else {
      throw new RangeError(`role must be 'listen', 'connect' or 'fd'`);
    }
  }

  /** The front-end's session, while one is connected. */
  get session(): S | null {
    return this.current;
  }

  private listen(path: string): void {
    const { fd, log } = this.options;
    this.listener = listenUnixSocket(fd, path, 1, this.options.socketAccess);
    const listenFd = this.listener.fd;
    this.stopListenWatch = fd.watchReadable(listenFd, (error) => {
      if (error) {
        log('error', `listening socket failed: ${error.message}; no more connections`);
        return;
      }
      for (;;) {
        let conn: number;
        try {
          conn = fd.unixAccept(listenFd);
        } catch (error) {
          log('warn', `accept failed: ${String(error)}`);
          return;
        }
        if (conn < 0) return;
        if (this.current) {
          this.refuse(conn, path);
          continue;
        }
        this.startSession(conn);
      }
    });
  }

  /** Closes a front-end that connected while a session is live (takes conn). */
  private refuse(conn: number, path: string): void {
    this.refused++;
    let peer = 'an unknown process';
    try {
      const credentials = this.options.fd.peerCredentials(conn);
      peer = `pid ${credentials.pid}, uid ${credentials.uid}`;
    } catch {
      // the peer is gone already
    }
    this.options.fd.close(conn);
    // Whoever may connect can repeat it: the first ten are logged, then every hundredth.
    if (this.refused > 10 && this.refused % 100 !== 0) return;
    this.options.log(
      'warn',
      `refused a second front-end (${peer}) on ${path}: guest ${this.options.name ?? path} ` +
        `has a live session (${this.refused} refused so far)`,
    );
  }

  private startSession(conn: number): void {
    let ended = false;
    const session = this.options.startSession(conn, () => {
      ended = true;
      if (this.current === session) this.current = null;
    });
    if (!ended) this.current = session;
  }

  /** Ends the session and stops listening (the socket file is removed). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.end('backend closed');
    this.stopListenWatch?.();
    this.listener?.close();
    this.listener = null;
  }
}

/** The `DeviceIo` of a real session: native mmap, eventfds and poll. */
export function nativeDeviceIo(fd: FdAddon): DeviceIo {
  return {
    map: (memfd, offset, length) => new Uint8Array(fd.mmap(memfd, offset, length, true)),
    unmap: (mapping) => fd.munmap(mapping.buffer as ArrayBuffer),
    fileSize: (x) => {
      const status = fd.fdStat(x);
      if (!status.regular) throw new Error('not a regular file (a memfd or a memory file)');
      return status.size;
    },
    close: (x) => fd.close(x),
    eventfdWrite: (x) => fd.eventfdWrite(x),
    eventfdRead: (x) => void fd.eventfdRead(x),
    watchReadable: (x, cb) => fd.watchReadable(x, cb),
  };
}

/**
 * One front-end connection: reads messages from `conn` (owned), hands them to the device and
 * sends the replies. When it ends, `onEnding` runs before the device is disposed (device users
 * detach there) and `onEnd` once the device is disposed and `conn` closed.
 */
export class VhostUserSession {
  private readonly reader: FrameReader;
  private stopWatch: (() => void) | null = null;
  private ended = false;

  constructor(
    private readonly conn: number,
    private readonly fd: FdAddon,
    private readonly log: Logger,
    readonly device: VhostUserDevice,
    private readonly onEnd: (reason: string) => void,
    private readonly onEnding?: () => void,
  ) {
    this.reader = new FrameReader((x) => fd.close(x));
  }

  get isEnded(): boolean {
    return this.ended;
  }

  start(): void {
    this.stopWatch = this.fd.watchReadable(this.conn, (error) => {
      if (error) this.end(`poll failed: ${error.message}`);
      else this.readable();
    });
  }

  private readable(): void {
    while (!this.ended) {
      let chunk;
      try {
        chunk = this.fd.unixRecv(this.conn, this.reader.wanted());
      } catch (error) {
        this.end(`receive failed: ${String(error)}`);
        return;
      }
      if (chunk === null) return;
      if (chunk.data.length === 0) {
        for (const x of chunk.fds) this.fd.close(x);
        this.end('front-end closed the connection');
        return;
      }
      let messages;
      try {
        messages = this.reader.push(chunk.data, chunk.fds);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.end(`protocol error: ${error.message}`);
        return;
      }
      for (const message of messages) {
        if (this.ended) {
          for (const x of message.fds) this.fd.close(x);
          continue;
        }
        this.log(
          'debug',
          `vhost-user ${requestName(message.request)} (${message.payload.length} bytes, ${message.fds.length} fds)`,
        );
        let reply: Uint8Array | null;
        try {
          reply = this.device.handle(message);
        } catch (error) {
          this.end(`internal error on ${requestName(message.request)}: ${String(error)}`);
          return;
        }
        if (reply) {
          try {
            sendAll(this.fd, this.conn, reply);
          } catch (error) {
            this.end(`send failed: ${String(error)}`);
          }
        }
      }
    }
  }

  /** Ends the session: stops reading, disposes the device, closes the connection. Idempotent. */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.stopWatch?.();
    this.stopWatch = null;
    this.onEnding?.();
    this.device.dispose();
    this.reader.dispose();
    this.fd.close(this.conn);
    this.onEnd(reason);
  }
}

/**
 * Sends a whole message. Messages are small (at most a few hundred bytes) and the peer reads
 * them promptly, so a full socket means the peer is stuck: that throws (the session ends).
 */
export function sendAll(fdModule: FdAddon, socket: number, data: Uint8Array): void {
  let sent = 0;
  while (sent < data.length) {
    const n = fdModule.unixSend(socket, data.subarray(sent));
    if (n <= 0) throw new Error('peer does not accept data');
    sent += n;
  }
}
