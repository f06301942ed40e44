/**
 * Typed face of the addon's fd module (native/src/fd.cc): memfd and seals, udmabuf, dma-buf
 * sync, mmap as external ArrayBuffers, eventfd and AF_UNIX sockets with SCM_RIGHTS.
 *
 * Ownership: "takes" means the callee closes the fd (also on error); "borrows" means the caller
 * keeps it. Every returned fd is owned by the caller and has FD_CLOEXEC set.
 * Failures of system calls throw SystemError (`code`, `errno`, `syscall`, like Node's own); bad
 * argument types or ranges throw TypeError / RangeError before any system call. Numbers that
 * carry sizes or offsets must be non-negative safe integers.
 */
import { native, type SystemError } from './index.js';

/** F_SEAL_* bits (fcntl.h). */
export const Seal = {
  SEAL: 0x1,
  SHRINK: 0x2,
  GROW: 0x4,
  WRITE: 0x8,
  FUTURE_WRITE: 0x10,
} as const;

/** DMA_BUF_SYNC_* flags (linux/dma-buf.h). */
export const DmaBufSync = {
  READ: 1,
  WRITE: 2,
  RW: 3,
  START: 0,
  END: 4,
} as const;

/** One range of a udmabuf list: a span of a memfd. All three must be page aligned. */
export interface UdmabufRange {
  memfd: number;
  offset: number;
  size: number;
}

/** A received AF_UNIX message: payload plus fds passed with SCM_RIGHTS (now owned by caller). */
export interface UnixMessage {
  /** The payload (empty at end of stream). */
  data: Uint8Array;
  fds: number[];
  /**
   * True when the peer sent more fds than fit (32): the kernel dropped some, so every fd that did
   * arrive was closed and `fds` is empty. Treat the connection as broken.
   */
  fdsTruncated: boolean;
}

export interface FdAddon {
  /** memfd_create(name, MFD_CLOEXEC | (allowSealing ? MFD_ALLOW_SEALING : 0)); default true. */
  memfdCreate(name: string, allowSealing?: boolean): number;
  /** fcntl(F_ADD_SEALS). Borrows fd. */
  addSeals(fd: number, seals: number): void;
  /** fcntl(F_GET_SEALS). Borrows fd. */
  getSeals(fd: number): number;
  /** ftruncate. Borrows fd. */
  ftruncate(fd: number, size: number): void;
  /** lseek(fd, 0, SEEK_END): the size of a memfd or dma-buf. Borrows fd. */
  fdSize(fd: number): number;
  /** fstat: st_size, and whether fd is a regular file (S_ISREG). Borrows fd. */
  fdStat(fd: number): { size: number; regular: boolean };
  /** pread/pwrite into/from a view. Borrows fd. Returns bytes moved. */
  pread(fd: number, target: Uint8Array, position: number): number;
  pwrite(fd: number, source: Uint8Array, position: number): number;
  /** fcntl(F_DUPFD_CLOEXEC). Borrows fd; returns a new owned fd. */
  dup(fd: number): number;
  /** close. Takes fd (it is released even when close reports EINTR). */
  close(fd: number): void;
  /** The number of open fds of this process (entries of /proc/self/fd), for leak tests. */
  openFdCount(): number;

  /** open("/dev/udmabuf", O_RDWR | O_CLOEXEC). */
  udmabufOpen(path?: string): number;
  /** UDMABUF_CREATE with UDMABUF_FLAGS_CLOEXEC. Borrows both fds; returns the dma-buf fd. */
  udmabufCreate(deviceFd: number, range: UdmabufRange): number;
  /** UDMABUF_CREATE_LIST with UDMABUF_FLAGS_CLOEXEC. Borrows all fds; returns the dma-buf fd. */
  udmabufCreateList(deviceFd: number, ranges: UdmabufRange[]): number;
  /** DMA_BUF_IOCTL_SYNC with DmaBufSync flags. Borrows fd. */
  dmabufSync(fd: number, flags: number): void;

  /**
   * mmap(fd, offset, length) MAP_SHARED as an external ArrayBuffer. Borrows fd (the mapping
   * stays valid after close). `writable` selects PROT_WRITE (default false). `offset` must be
   * page aligned and `length` positive.
   */
  mmap(fd: number, offset: number, length: number, writable?: boolean): ArrayBuffer;
  /** Detaches the ArrayBuffer and munmaps it. Calling it twice is a no-op. A finalizer unmaps an
   * unreachable mapping that was never unmapped. */
  munmap(buffer: ArrayBuffer): void;

  /** eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK). */
  eventfd(initial?: number): number;
  /** Adds 1 (or `value`) to an eventfd counter. Borrows fd. */
  eventfdWrite(fd: number, value?: number): void;
  /** Reads and resets the counter; 0 when it was zero (EAGAIN). Borrows fd. Counters above
   * 2^53 lose precision (the project only counts notifications). */
  eventfdRead(fd: number): number;

  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0));
   * nonBlocking defaults to true. Pass false for an end handed to a child process. */
  socketpair(nonBlocking?: boolean): [number, number];
  /**
   * A listening AF_UNIX stream socket bound to `path` (non-blocking). With `mode`, the socket
   * inode gets it (fchmod) before bind, so the file is created with at most `mode` (less the
   * umask) and never wider.
   */
  unixListen(path: string, backlog?: number, mode?: number): number;
  /**
   * A non-blocking connect() to `path`, closed at once; the errno name connect() gave ("OK" when
   * it connected). EAGAIN: a live listener with a full backlog. ECONNREFUSED: nobody listens.
   */
  unixProbe(path: string): string;
  /** getgrnam_r: the gid of a group name, null when the group does not exist. */
  groupId(name: string): number | null;
  /** accept4(SOCK_CLOEXEC | SOCK_NONBLOCK); -1 when nothing is pending. Borrows the listener. */
  unixAccept(listenFd: number): number;
  /** connect to an AF_UNIX stream socket path (blocking connect, then non-blocking fd). */
  unixConnect(path: string): number;
  /**
   * sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT: never blocks, also on a blocking socket) with optional SCM_RIGHTS fds (at most 253, borrowed: the kernel dups
   * them; they need at least one byte of data). Returns bytes sent, which may be fewer than
   * `data.length`; the fds travel with the first byte. Throws EAGAIN when nothing could be sent.
   */
  unixSend(fd: number, data: Uint8Array, fds?: number[]): number;
  /** recvmsg(MSG_CMSG_CLOEXEC) of up to maxBytes (1..16 MiB) with up to 32 fds; null on
   * EAGAIN; data empty on end of stream. Received fds are owned by the caller. */
  unixRecv(fd: number, maxBytes: number): UnixMessage | null;
  /** SO_PEERCRED of a connected AF_UNIX socket (the peer at connect time). Borrows fd. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** Whether fd is an AF_UNIX socket and a stream socket; throws ENOTSOCK (or EBADF) for
   * anything else. Borrows fd. */
  socketKind(fd: number): { unix: boolean; stream: boolean };
  /** Sets O_NONBLOCK and FD_CLOEXEC on an inherited fd (e.g. vhost-user's --fd=N) so it behaves
   * like the addon's own sockets. Borrows fd. */
  adoptFd(fd: number): void;
  /**
   * Watches fd for readability on Node's loop (uv_poll); calls `onReadable` each time it is
   * readable (level triggered: read until EAGAIN or it fires again). On a poll error the watch
   * stops and `onReadable` gets the error once. Returns an idempotent function that stops
   * watching (the fd is not closed; stop before closing it). Borrows fd. An active watch keeps
   * the process alive. One watch per fd: a second one throws EEXIST.
   */
  watchReadable(fd: number, onReadable: (error?: SystemError) => void): () => void;
  /** poll(POLLIN) with a timeout in ms, blocking the thread: true when readable. Borrows fd. For
   * tools and tests; event-driven code uses watchReadable. */
  pollReadable(fd: number, timeoutMs: number): boolean;
  /** sysconf(_SC_PAGESIZE). */
  pageSize(): number;
}

export const fd = native as unknown as FdAddon;

/**
 * Resolves when fd becomes readable; rejects with the poll error, or with a timeout error after
 * `timeoutMs` (a guard against a hang, not a measurement). Borrows fd.
 */
export function waitReadable(fdNumber: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`fd ${fdNumber} did not become readable within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = fd.watchReadable(fdNumber, (error) => {
      stop();
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** The system page size (sysconf(_SC_PAGESIZE)), read once. */
export const pageSize: number = fd.pageSize();
