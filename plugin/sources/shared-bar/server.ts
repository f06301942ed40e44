/**
 * guestfb as an ivshmem server (QEMU docs/specs/ivshmem-spec.rst, "The ivshmem Client-Server
 * Protocol"), so QEMU's `ivshmem-doorbell` gets its shared memory from guestfb.
 *
 * The connection is one-way: the server sends 8-byte little-endian signed numbers, some with
 * one fd (SCM_RIGHTS). On connect a client gets, in order: the protocol version (0); its own
 * id; -1 with the shared memory fd; for every other peer, that peer's id once per vector, each
 * with the eventfd that interrupts it on that vector; then its own id once per vector, each
 * with the eventfd it receives interrupts on. The other clients then hear about the new one
 * (its id once per vector with its eventfds), and about a departure as its id without an fd.
 *
 * guestfb is a peer too (id `hostPeerId`, default 0; clients get the lowest free id from 1):
 * its own eventfds are watched, so a guest writing (hostPeerId << 16 | vector) to its Doorbell
 * register calls `onDoorbell(vector)`.
 *
 * Fds: the shared memory fd is BORROWED (the caller owns it and keeps it open while the server
 * runs). The server owns the listening socket, each client connection, and every eventfd
 * (its own and each client's); close() releases them all.
 */
import { fd as fdModule, type FdAddon } from '../../../native/fd.js';
import { linesOf, type Logger } from '../../common/log.js';
import {
  listenUnixSocket,
  type ListeningSocket,
  type SocketAccess,
} from '../../common/unix-socket.js';

export const IVSHMEM_PROTOCOL_VERSION = 0;
/** The Doorbell register has 16 bits for the peer id. */
export const MAX_PEER_ID = 0xffff;
/** Clients at once by default: the one QEMU that shows this BAR. */
export const DEFAULT_IVSHMEM_PEERS = 1;
export const MAX_IVSHMEM_PEERS = 64;

export interface IvshmemServerOptions {
  socketPath: string;
  /** The shared memory (borrowed). */
  shmFd: number;
  /** Interrupt vectors per peer (QEMU's `vectors=`, default 1). */
  vectors?: number;
  /** guestfb's own peer id (default 0). */
  hostPeerId?: number;
  /** Clients at once (default 1: the one QEMU; every client gets the read-write BAR memfd and
   * every peer's eventfds, so a further one is refused with a log line). */
  maxClients?: number;
  /** Who may connect to the socket (default: the owner only, mode 0600). */
  socketAccess?: SocketAccess;
  onDoorbell?: (vector: number) => void;
  onConnect?: (peerId: number) => void;
  onDisconnect?: (peerId: number, reason: string) => void;
  log?: Logger;
  /** For tests: the fd module (default: the native addon). */
  fdModule?: FdAddon;
}

interface Peer {
  id: number;
  /** -1 for guestfb itself. */
  conn: number;
  eventfds: number[];
  stopWatch: (() => void) | null;
}

/** One 8-byte protocol message. */
export function encodeMessage(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, BigInt(value), true);
  return bytes;
}

export class IvshmemServer {
  readonly vectors: number;
  readonly hostPeerId: number;
  private readonly fd: FdAddon;
  private readonly log: Logger;
  private readonly host: Peer;
  private readonly clients = new Map<number, Peer>();
  private readonly maxClients: number;
  private readonly listener: ListeningSocket;
  private stopListen: (() => void) | null;
  private readonly hostWatches: (() => void)[] = [];
  private closed = false;
  readonly counters = { connections: 0, disconnects: 0, refused: 0, doorbells: 0 };

  constructor(private readonly options: IvshmemServerOptions) {
    this.fd = options.fdModule ?? fdModule;
    this.log =
      options.log ??
      linesOf((line) => process.stderr.write(`${line}\n`), 'guestfb ivshmem: ', {
        showLevel: false,
      });
    this.vectors = options.vectors ?? 1;
    this.hostPeerId = options.hostPeerId ?? 0;
    this.maxClients = options.maxClients ?? DEFAULT_IVSHMEM_PEERS;
    if (
      !Number.isInteger(this.maxClients) ||
      this.maxClients < 1 ||
      this.maxClients > MAX_IVSHMEM_PEERS
    ) {
      throw new RangeError(`ivshmem peers must be 1..${MAX_IVSHMEM_PEERS}, got ${this.maxClients}`);
    }
    if (!Number.isInteger(this.vectors) || this.vectors < 1 || this.vectors > 64) {
      throw new RangeError(`vectors must be 1..64, got ${this.vectors}`);
    }
    if (
      !Number.isInteger(this.hostPeerId) ||
      this.hostPeerId < 0 ||
      this.hostPeerId > MAX_PEER_ID
    ) {
      throw new RangeError(`host peer id must be 0..${MAX_PEER_ID}`);
    }
    this.host = { id: this.hostPeerId, conn: -1, eventfds: [], stopWatch: null };
    try {
      for (let v = 0; v < this.vectors; v++) this.host.eventfds.push(this.fd.eventfd(0));
      this.listener = listenUnixSocket(this.fd, options.socketPath, 4, options.socketAccess);
    } catch (error) {
      for (const x of this.host.eventfds) this.fd.close(x);
      throw error;
    }
    this.host.eventfds.forEach((eventfd, vector) => {
      this.hostWatches.push(
        this.fd.watchReadable(eventfd, (error) => {
          if (error) {
            this.log('warn', `doorbell eventfd ${vector}: ${error.message}`);
            return;
          }
          if (this.fd.eventfdRead(eventfd) === 0) return;
          this.counters.doorbells++;
          this.options.onDoorbell?.(vector);
        }),
      );
    });
    const listenFd = this.listener.fd;
    this.stopListen = this.fd.watchReadable(listenFd, () => this.acceptAll(listenFd));
  }

  /** Ids of connected clients. */
  peers(): number[] {
    return [...this.clients.keys()];
  }

  /** Rings a client's vector (interrupts the guest), false when it has no such vector. */
  ring(peerId: number, vector = 0): boolean {
    const eventfd = this.clients.get(peerId)?.eventfds[vector];
    if (eventfd === undefined) return false;
    this.fd.eventfdWrite(eventfd, 1);
    return true;
  }

  /** guestfb's own eventfd for a vector (borrowed; tests ring it as a guest would). */
  hostEventfd(vector = 0): number {
    const eventfd = this.host.eventfds[vector];
    if (eventfd === undefined) throw new RangeError(`no vector ${vector}`);
    return eventfd;
  }

  private acceptAll(listenFd: number): void {
    for (;;) {
      let conn: number;
      try {
        conn = this.fd.unixAccept(listenFd);
      } catch (error) {
        this.log('warn', `accept failed: ${(error as Error).message}`);
        return;
      }
      if (conn < 0) return;
      this.admit(conn);
    }
  }

  private freeId(): number | null {
    for (let id = 0; id <= MAX_PEER_ID; id++) {
      if (id !== this.hostPeerId && !this.clients.has(id)) return id;
    }
    return null;
  }

  private admit(conn: number): void {
    const id = this.clients.size < this.maxClients ? this.freeId() : null;
    if (id === null) {
      this.counters.refused++;
      let peer = 'an unknown process';
      try {
        const credentials = this.fd.peerCredentials(conn);
        peer = `pid ${credentials.pid}, uid ${credentials.uid}`;
      } catch {
        // the peer is gone already
      }
      this.fd.close(conn);
      // Whoever may connect can repeat it: the first ten are logged, then every hundredth.
      const refused = this.counters.refused;
      if (refused <= 10 || refused % 100 === 0) {
        this.log(
          'warn',
          `refused a client (${peer}) on ${this.options.socketPath}: ${this.clients.size} of ` +
            `${this.maxClients} peers connected (${refused} refused so far)`,
        );
      }
      return;
    }
    const peer: Peer = { id, conn, eventfds: [], stopWatch: null };
    try {
      for (let v = 0; v < this.vectors; v++) peer.eventfds.push(this.fd.eventfd(0));
      this.send(conn, IVSHMEM_PROTOCOL_VERSION);
      this.send(conn, id);
      this.send(conn, -1, this.options.shmFd);
      for (const other of [this.host, ...this.clients.values()]) {
        for (const eventfd of other.eventfds) this.send(conn, other.id, eventfd);
      }
      for (const eventfd of peer.eventfds) this.send(conn, id, eventfd);
    } catch (error) {
      for (const x of peer.eventfds) this.fd.close(x);
      this.fd.close(conn);
      this.log('warn', `client setup failed: ${(error as Error).message}`);
      return;
    }
    this.clients.set(id, peer);
    this.counters.connections++;
    for (const other of [...this.clients.values()]) {
      if (other === peer) continue;
      try {
        for (const eventfd of peer.eventfds) this.send(other.conn, id, eventfd);
      } catch (error) {
        this.drop(other, `send failed: ${(error as Error).message}`);
      }
    }
    peer.stopWatch = this.fd.watchReadable(conn, () => this.readable(peer));
    this.options.onConnect?.(id);
  }

  /** Clients never speak; readable means hang-up (or a client breaking the protocol). */
  private readable(peer: Peer): void {
    if (!this.clients.has(peer.id) || this.clients.get(peer.id) !== peer) return;
    let message;
    try {
      message = this.fd.unixRecv(peer.conn, 64);
    } catch (error) {
      this.drop(peer, `receive failed: ${(error as Error).message}`);
      return;
    }
    if (message === null) return;
    for (const x of message.fds) this.fd.close(x);
    if (message.data.length === 0) this.drop(peer, 'client closed the connection');
    else this.drop(peer, `client sent ${message.data.length} bytes on a one-way connection`);
  }

  private send(conn: number, value: number, fd?: number): void {
    const data = encodeMessage(value);
    const sent = this.fd.unixSend(conn, data, fd === undefined ? undefined : [fd]);
    // 8 bytes on a fresh stream socket go out whole or not at all in practice; a short write
    // would desynchronise the client, so it counts as a failure.
    if (sent !== data.length) throw new Error(`short send (${sent} of ${data.length} bytes)`);
  }

  private drop(peer: Peer, reason: string): void {
    if (this.clients.get(peer.id) !== peer) return;
    this.clients.delete(peer.id);
    this.counters.disconnects++;
    peer.stopWatch?.();
    peer.stopWatch = null;
    this.fd.close(peer.conn);
    for (const x of peer.eventfds) this.fd.close(x);
    peer.eventfds = [];
    for (const other of [...this.clients.values()]) {
      try {
        this.send(other.conn, peer.id);
      } catch (error) {
        this.drop(other, `send failed: ${(error as Error).message}`);
      }
    }
    this.options.onDisconnect?.(peer.id, reason);
  }

  /** Drops every client (they get no notice: they are all gone), stops listening, frees fds. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const peer of [...this.clients.values()]) {
      this.clients.delete(peer.id);
      peer.stopWatch?.();
      this.fd.close(peer.conn);
      for (const x of peer.eventfds) this.fd.close(x);
      this.options.onDisconnect?.(peer.id, 'server closed');
    }
    this.stopListen?.();
    this.stopListen = null;
    this.listener.close();
    for (const stop of this.hostWatches) stop();
    for (const x of this.host.eventfds) this.fd.close(x);
    this.host.eventfds = [];
  }
}
