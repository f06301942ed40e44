/**
 * The shared BAR source: a framebuffer that a guest writes into an ivshmem BAR whose memory
 * guestfb owns (a sealed memfd), described by the header at the start of the BAR (header.ts,
 * README "Shared BAR header (ivshmem)").
 *
 *   ivshmem-doorbell: createSharedBarSource({ ivshmemSocket })   guestfb is the ivshmem server;
 *     QEMU: -chardev socket,id=ivsh,path=SOCKET -device ivshmem-doorbell,chardev=ivsh,vectors=1
 *     The guest rings guestfb's doorbell (peer id in the host area of the header page) after
 *     each frame; the sequence number is polled as well, so a guest that never rings works too.
 *   ivshmem-plain: createSharedBarSource({})  or  ({ memfd })     no server, polling only; QEMU
 *     maps guestfb's memfd through /proc: see `plainQemuArgs()`.
 *
 * Each committed frame (an even sequence number that changed) becomes a `flush` of the same
 * resource: the dma-buf wraps the BAR pages once per layout, no pixel is copied. A header that
 * fails validation is logged once per distinct problem and ignored.
 *
 * Fds: the BAR memfd is owned by the source when it created it, borrowed when passed in
 * (`memfd`). Backing ranges handed to the presenter borrow it (valid until `close()`).
 */
import { fd as fdModule, Seal, type FdAddon } from '../../../native/fd.js';
import { TypedEmitter } from '../../common/emitter.js';
import { linesOf, type Logger } from '../../common/log.js';
import type { SocketAccess } from '../../common/unix-socket.js';
import { DrmFormat } from '../../common/formats.js';
import type {
  CursorUpdate,
  FramebufferSource,
  HeadInfo,
  Rect,
  ScanoutInfo,
  SourceEventName,
  SourceEvents,
  SourceListener,
  SourceResource,
  SourceStats,
} from '../types.js';
import {
  BAR_ALIGNMENT,
  BAR_HEADER_PAGE,
  BAR_HEADER_SIZE_V1,
  BAR_VERSION_REQUESTS,
  Field,
  MAX_DIMENSION,
  encodeHostRequest,
  HOST_MAGIC,
  NO_HOST_PEER,
  layoutKey,
  parseBarHeader,
  readSequence,
  type BarCursor,
  type BarLayout,
} from './header.js';
import { IvshmemServer } from './server.js';

export * from './header.js';
export { IvshmemServer, type IvshmemServerOptions } from './server.js';

export const DEFAULT_BAR_SIZE = 64 * 1024 * 1024;
export const DEFAULT_POLL_MS = 16;
/** Distinct problems logged at most (a guest cycling through garbage must not flood the log). */
const MAX_LOGGED_PROBLEMS = 64;

export interface SharedBarSourceOptions {
  /** Be the ivshmem server on this socket (ivshmem-doorbell). Omitted: plain mode, polling. */
  ivshmemSocket?: string;
  /** BAR size when guestfb creates the memfd: a power of two, 8 KiB..16 GiB; default 64 MiB. */
  barSize?: number;
  /** Use this memfd as the BAR (borrowed; its size is the BAR size). Default: create one. */
  memfd?: number;
  /** Poll the sequence every N ms when no doorbell rang recently (default 16; 0: never). */
  pollMs?: number;
  /** Head (monitor) name, default "ivshmem". */
  name?: string;
  /** Who may connect to the ivshmem socket (default: the owner only, mode 0600). */
  socketAccess?: SocketAccess;
  /** ivshmem clients at once (default 1); further ones are refused with a log line. */
  maxPeers?: number;
  log?: Logger;
  /** For tests: the fd module (default: the native addon). */
  fdModule?: FdAddon;
}

/** Parses "64M", "1G", "65536", "4k" (binary units). NaN when malformed. */
export function parseSize(text: string): number {
  const match = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  if (!match) return NaN;
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase()]!;
  return Number(match[1]) * unit;
}

/** Why `size` cannot be a BAR, or null. */
export function barSizeProblem(size: number): string | null {
  if (!Number.isSafeInteger(size) || size < 2 * BAR_HEADER_PAGE || size > 2 ** 34) {
    return `BAR size ${size} is outside 8 KiB..16 GiB`;
  }
  if (!Number.isInteger(Math.log2(size))) {
    return `BAR size ${size} is not a power of two (PCI BARs are)`;
  }
  return null;
}

export interface SharedBarSource extends FramebufferSource {
  /** The BAR memfd (borrowed from the source). */
  readonly memfd: number;
  readonly barSize: number;
  /** The ivshmem server, or null in plain mode. */
  readonly server: IvshmemServer | null;
  /** Reads the header now (what the doorbell and the poll timer do). */
  poll(): void;
  /** QEMU arguments for ivshmem-plain on this BAR (a memory backend on /proc/PID/fd/N). */
  plainQemuArgs(id?: string): string[];
  /**
   * Asks the guest's writer for a `width`x`height` XRGB framebuffer (header version 2: the
   * host area's request fields). A version-2 writer re-lays out at that size; the framebuffer
   * then changes like any layout change. Returns false (nothing written) for a head other than
   * 0 or a size that is out of range or does not fit the BAR at 4 bytes per pixel, and false
   * (written, for a later writer) while the current writer is version 1, which ignores requests.
   */
  requestHeadSize(headId: number, width: number, height: number): boolean;
}

export function createSharedBarSource(options: SharedBarSourceOptions = {}): SharedBarSource {
  return new BarSource(options);
}

const RESOURCE_BASE = 1;
const MAX_RESOURCE_ID = 0xffff_ffff;

class BarSource implements SharedBarSource {
  readonly memfd: number;
  readonly barSize: number;
  readonly server: IvshmemServer | null = null;
  private readonly fd: FdAddon;
  private readonly ownsMemfd: boolean;
  private readonly log: Logger;
  private readonly emitter: TypedEmitter<SourceEvents>;
  private readonly mapping: ArrayBuffer;
  private readonly live: DataView;
  private readonly snapshot = new DataView(new ArrayBuffer(BAR_HEADER_SIZE_V1));
  private readonly snapshotBytes = new Uint8Array(this.snapshot.buffer);
  private readonly liveHeader: Uint8Array;
  private readonly name: string;
  private readonly pollMs: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastDoorbell = -Infinity;
  private lastSequence: number | null = null;
  private layout: BarLayout | null = null;
  private key = '';
  private resourceInfo: SourceResource | null = null;
  private scanoutInfo: ScanoutInfo | null = null;
  private head: HeadInfo;
  private nextResourceId = RESOURCE_BASE;
  private cursorState: { visible: boolean; serial: number; x: number; y: number } | null = null;
  /** Header version of the writer's last good header (0: none yet). */
  private writerVersion = 0;
  /** The last host request written (even; 0: none). */
  private requestSequence = 0;
  private lastAck: number | null = null;
  private readonly loggedProblems = new Set<string>();
  private closed = false;
  private readonly counters = {
    frames: 0,
    doorbells: 0,
    doorbellFrames: 0,
    polledFrames: 0,
    invalidHeaders: 0,
    layoutChanges: 0,
    tornReads: 0,
    bytesCopied: 0,
    sizeRequests: 0,
    requestsAcked: 0,
  };

  constructor(options: SharedBarSourceOptions) {
    this.fd = options.fdModule ?? fdModule;
    this.log =
      options.log ??
      linesOf((line) => process.stderr.write(`${line}\n`), 'guestfb bar: ', {
        showLevel: false,
      });
    this.emitter = new TypedEmitter<SourceEvents>((error, event) =>
      this.log('error', `listener for ${String(event)} threw: ${String(error)}`),
    );
    this.name = options.name ?? 'ivshmem';
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    if (!(this.pollMs >= 0 && this.pollMs <= 10_000)) throw new RangeError('pollMs: 0..10000');
    this.head = { id: 0, width: 1, height: 1, x: 0, y: 0, enabled: false, name: this.name };
    let memfd: number;
    if (options.memfd !== undefined) {
      memfd = options.memfd;
      this.ownsMemfd = false;
      this.barSize = this.fd.fdSize(memfd);
      const problem = barSizeProblem(this.barSize);
      if (problem) throw new RangeError(`memfd: ${problem}`);
    } else {
      this.barSize = options.barSize ?? DEFAULT_BAR_SIZE;
      const problem = barSizeProblem(this.barSize);
      if (problem) throw new RangeError(problem);
      memfd = this.fd.memfdCreate('guestfb-ivshmem-bar', true);
      this.ownsMemfd = true;
      try {
        this.fd.ftruncate(memfd, this.barSize);
        // udmabuf needs F_SEAL_SHRINK and refuses F_SEAL_WRITE; GROW keeps the guest side from
        // resizing what the dma-buf covers.
        this.fd.addSeals(memfd, Seal.SHRINK | Seal.GROW);
      } catch (error) {
        this.fd.close(memfd);
        throw error;
      }
    }
    this.memfd = memfd;
    let mapping: ArrayBuffer | null = null;
    try {
      mapping = this.fd.mmap(memfd, 0, this.barSize, false);
      this.writeHostArea(NO_HOST_PEER);
      if (options.ivshmemSocket !== undefined) {
        this.server = new IvshmemServer({
          socketPath: options.ivshmemSocket,
          shmFd: memfd,
          socketAccess: options.socketAccess,
          maxClients: options.maxPeers,
          fdModule: this.fd,
          log: (level, message) => this.log(level, `ivshmem: ${message}`),
          onDoorbell: () => this.doorbell(),
          onConnect: (peer) => this.log('info', `ivshmem: peer ${peer} connected`),
          onDisconnect: (peer, reason) => this.peerGone(peer, reason),
        });
        this.writeHostArea(this.server.hostPeerId);
      }
    } catch (error) {
      if (mapping) this.fd.munmap(mapping);
      if (this.ownsMemfd) this.fd.close(memfd);
      throw error;
    }
    this.mapping = mapping;
    this.live = new DataView(mapping, 0, BAR_HEADER_PAGE);
    this.liveHeader = new Uint8Array(mapping, 0, BAR_HEADER_SIZE_V1);
    if (this.pollMs > 0) {
      this.timer = setInterval(() => {
        // The doorbell drives frames while it rings; polling covers guests that never ring.
        if (performance.now() - this.lastDoorbell > 4 * this.pollMs) this.poll('poll');
      }, this.pollMs);
      this.timer.unref();
    }
    this.poll();
  }

  private writeHostArea(peer: number): void {
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, HOST_MAGIC, true);
    view.setUint32(4, peer >>> 0, true);
    this.fd.pwrite(this.memfd, bytes, Field.hostMagic);
  }

  /** Follows the writer's version and its acknowledgement of the last size request. */
  private noteWriter(version: number, ack: number | null, layout: BarLayout): void {
    if (version !== this.writerVersion) {
      this.writerVersion = version;
      if (version < BAR_VERSION_REQUESTS) {
        this.log('info', `the guest's writer uses header version ${version}: no size requests`);
      }
    }
    if (ack === null || ack === this.lastAck) return;
    this.lastAck = ack;
    if (ack === 0 || ack !== this.requestSequence) return;
    this.counters.requestsAcked++;
    this.log(
      'info',
      `the guest handled size request ${ack}: framebuffer ${layout.width}x${layout.height}`,
    );
  }

  requestHeadSize(headId: number, width: number, height: number): boolean {
    if (this.closed || headId !== 0) return false;
    const inRange = (v: number) => Number.isInteger(v) && v >= 1 && v <= MAX_DIMENSION;
    if (!inRange(width) || !inRange(height)) return false;
    // XRGB, packed, past the header page: what a writer lays out for a request.
    const bytes = Math.ceil((width * 4 * height) / BAR_ALIGNMENT) * BAR_ALIGNMENT;
    if (BAR_HEADER_PAGE + bytes > this.barSize) {
      this.log('warn', `size request ${width}x${height} does not fit the ${this.barSize}-byte BAR`);
      return false;
    }
    const sequence = this.requestSequence >= 0xffff_fffe ? 2 : this.requestSequence + 2;
    const { odd, body, done } = encodeHostRequest({ sequence, width, height });
    // Odd first: a writer reading between these writes skips the half-written size.
    this.fd.pwrite(this.memfd, odd, Field.requestSequence);
    this.fd.pwrite(this.memfd, body, Field.requestWidth);
    this.fd.pwrite(this.memfd, done, Field.requestSequence);
    this.requestSequence = sequence;
    this.counters.sizeRequests++;
    return this.writerVersion === 0 || this.writerVersion >= BAR_VERSION_REQUESTS;
  }

  plainQemuArgs(id = 'guestfb-bar'): string[] {
    return [
      '-object',
      `memory-backend-file,id=${id},mem-path=/proc/${process.pid}/fd/${this.memfd},size=${this.barSize},share=on`,
      '-device',
      `ivshmem-plain,memdev=${id}`,
    ];
  }

  private doorbell(): void {
    this.counters.doorbells++;
    this.lastDoorbell = performance.now();
    this.poll('doorbell');
  }

  private peerGone(peer: number, reason: string): void {
    if (this.closed) return;
    this.log('info', `ivshmem: peer ${peer} gone (${reason})`);
    if (this.server && this.server.peers().length > 0) return;
    // The guest is gone: forget its header so a new guest starts from a clean page.
    this.fd.pwrite(this.memfd, new Uint8Array(BAR_HEADER_SIZE_V1), 0);
    this.reset();
    this.emitter.emit('disconnected', `ivshmem peer ${peer} gone: ${reason}`);
  }

  private reset(): void {
    const old = this.resourceInfo;
    this.layout = null;
    this.key = '';
    this.resourceInfo = null;
    this.scanoutInfo = null;
    this.lastSequence = null;
    this.cursorState = null;
    // The next writer may be another program; the request itself stays for it to pick up.
    this.writerVersion = 0;
    this.lastAck = null;
    if (this.head.enabled) {
      this.head = { ...this.head, enabled: false };
      this.emitter.emit('headsChanged', [this.head]);
    }
    if (old) this.emitter.emit('resourceDestroyed', old.id);
  }

  private problem(message: string): void {
    if (this.loggedProblems.has(message)) return;
    if (this.loggedProblems.size === MAX_LOGGED_PROBLEMS) {
      this.loggedProblems.add(message);
      this.log('warn', 'bad header: further distinct problems are not logged');
      return;
    }
    if (this.loggedProblems.size > MAX_LOGGED_PROBLEMS) return;
    this.loggedProblems.add(message);
    this.log('warn', `bad header: ${message}; ignored`);
  }

  poll(why: 'doorbell' | 'poll' | 'call' = 'call'): void {
    if (this.closed) return;
    const sequence = readSequence(this.live);
    if (sequence === this.lastSequence) return;
    // Copy the (small) header so the checks and the use see the same values, then make sure
    // the guest did not start another frame while we copied.
    this.snapshotBytes.set(this.liveHeader);
    if (readSequence(this.live) !== readSequence(this.snapshot)) {
      this.counters.tornReads++;
      return;
    }
    const result = parseBarHeader(this.snapshot, this.barSize);
    if (result.status === 'empty' || result.status === 'writing') return;
    if (result.status === 'invalid') {
      this.counters.invalidHeaders++;
      this.lastSequence = sequence;
      for (const message of result.problems) this.problem(message);
      return;
    }
    const header = result.header;
    const previous = this.lastSequence;
    this.lastSequence = header.sequence;
    this.noteWriter(header.version, header.requestAck, header.layout);
    const replaced = layoutKey(header.layout) !== this.key;
    if (replaced) this.replace(header.layout);
    this.counters.frames++;
    if (why === 'doorbell') this.counters.doorbellFrames++;
    else if (why === 'poll') this.counters.polledFrames++;
    // Damage covers one frame: a missed frame (or a new buffer) needs the whole surface.
    const consecutive = previous !== null && (header.sequence - previous) >>> 0 === 2;
    const { width, height } = header.layout;
    const damage: readonly Rect[] =
      !replaced && consecutive && header.damage.length > 0
        ? header.damage
        : [{ x: 0, y: 0, width, height }];
    if (header.cursorProblem) this.problem(header.cursorProblem);
    this.updateCursor(header.cursor);
    this.emitter.emit('flush', 0, damage);
  }

  private replace(layout: BarLayout): void {
    const old = this.resourceInfo;
    this.counters.layoutChanges++;
    this.layout = layout;
    this.key = layoutKey(layout);
    // Ids stay within u32 like virtio-gpu's (the presenter keys its dma-buf cache by source and
    // id in 2^32 slots per source); only one resource is live at a time, so wrapping is safe.
    const id = this.nextResourceId;
    this.nextResourceId = id >= MAX_RESOURCE_ID ? RESOURCE_BASE : id + 1;
    const { fourcc, modifier, width, height, stride } = layout;
    this.resourceInfo = {
      id,
      kind: '2d',
      fourcc,
      modifier,
      width,
      height,
      stride,
      offset: 0,
      size: layout.span,
      backing: [{ fd: this.memfd, offset: layout.offset, length: layout.span }],
      // The BAR is memory the guest shares for display only, not its RAM.
      displayMemoryOnly: true,
    };
    this.scanoutInfo = {
      headId: 0,
      resourceId: id,
      fourcc,
      modifier,
      width,
      height,
      stride,
      offset: 0,
      rect: { x: 0, y: 0, width, height },
    };
    this.log(
      'info',
      `framebuffer ${width}x${height} stride ${stride} at BAR offset ${layout.offset} ` +
        `(${this.barSize}-byte BAR)`,
    );
    const headChanged =
      !this.head.enabled || this.head.width !== width || this.head.height !== height;
    this.head = { ...this.head, width, height, enabled: true };
    this.emitter.emit('resourceCreated', this.resourceInfo);
    if (headChanged) this.emitter.emit('headsChanged', [this.head]);
    this.emitter.emit('scanoutSet', 0, this.scanoutInfo);
    if (old) this.emitter.emit('resourceDestroyed', old.id);
  }

  private updateCursor(cursor: BarCursor | null): void {
    const before = this.cursorState;
    if (!cursor) {
      if (before?.visible) {
        this.cursorState = { visible: false, serial: 0, x: 0, y: 0 };
        this.emitter.emit('cursor', { headId: 0, x: before.x, y: before.y, image: null });
      }
      return;
    }
    const update: CursorUpdate = { headId: 0, x: cursor.x, y: cursor.y };
    if (!before?.visible || before.serial !== cursor.serial) {
      // Cursor images are small (at most 256x256): copied, like virtio-gpu's.
      const pixels = new Uint8Array(cursor.width * cursor.height * 4);
      pixels.set(new Uint8Array(this.mapping, cursor.imageOffset, pixels.length));
      update.image = {
        resourceId: 0,
        hotX: cursor.hotX,
        hotY: cursor.hotY,
        width: cursor.width,
        height: cursor.height,
        fourcc: DrmFormat.ARGB8888,
        pixels,
      };
    } else if (before.x === cursor.x && before.y === cursor.y) {
      return;
    }
    this.cursorState = { visible: true, serial: cursor.serial, x: cursor.x, y: cursor.y };
    this.emitter.emit('cursor', update);
  }

  on<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    this.emitter.on(event, listener);
    return this;
  }

  off<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    this.emitter.off(event, listener);
    return this;
  }

  heads(): readonly HeadInfo[] {
    return this.closed ? [] : [this.head];
  }

  resource(id: number): SourceResource | undefined {
    return !this.closed && this.resourceInfo?.id === id ? this.resourceInfo : undefined;
  }

  scanout(headId: number): ScanoutInfo | null {
    return !this.closed && headId === 0 ? this.scanoutInfo : null;
  }

  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean {
    const layout = this.layout;
    if (this.closed || !layout || this.resourceInfo?.id !== resourceId) return false;
    const { x, y, width: w, height: h } = rect;
    if (![x, y, w, h].every(Number.isInteger) || x < 0 || y < 0 || w < 1 || h < 1) return false;
    if (x + w > layout.width || y + h > layout.height || target.byteLength < w * h * 4) {
      return false;
    }
    if (layout.fourcc === DrmFormat.RGB565) return false;
    const bar = new Uint8Array(this.mapping);
    for (let row = 0; row < h; row++) {
      const from = layout.offset + (y + row) * layout.stride + x * 4;
      target.set(bar.subarray(from, from + w * 4), row * w * 4);
    }
    this.counters.bytesCopied += w * h * 4;
    return true;
  }

  stats(): SourceStats {
    const server = this.server?.counters;
    return {
      ...this.counters,
      ...(server
        ? {
            connections: server.connections,
            disconnects: server.disconnects,
            peersRefused: server.refused,
          }
        : {}),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.server?.close();
    this.emitter.emit('disconnected', 'shared BAR source closed');
    this.fd.munmap(this.mapping);
    if (this.ownsMemfd) this.fd.close(this.memfd);
  }
}
