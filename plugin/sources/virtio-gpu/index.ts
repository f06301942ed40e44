/**
 * guestfb as the vhost-user back-end of QEMU's `vhost-user-gpu-pci`.
 *
 *   const source = createVhostUserGpuBackend({ socketPath, role: 'listen' });
 *   source.on('scanoutSet', (head, scanout) => ...);
 *
 * role 'listen': guestfb creates the socket and QEMU connects (`-chardev socket,path=P`).
 * role 'connect': QEMU listens (`-chardev socket,path=P,server=on`) and guestfb connects.
 * role 'fd': serve an already-connected socket (`fd`, taken), e.g. the --fd=N libvirt gives a
 * back-end program; that one front-end only.
 * One front-end at a time; in 'listen' role a new connection is accepted after a disconnect.
 */
import { fd as fdModule, type FdAddon } from '../../../native/fd.js';
import type {
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
import { TypedEmitter } from '../../common/emitter.js';
import { linesOf, resolveLogLimits, type Logger, type LogLimits } from '../../common/log.js';
import type { GpuLimits } from './gpu-device.js';
import type { SocketAccess } from '../../common/unix-socket.js';
import { headsFromModes, QemuDisplayChannel } from './qemu-display.js';
import { VhostUserGpuDevice } from './vhost-user-gpu.js';
import { resolveQueueBudget, type QueueBudget } from '../../vhost-user/scheduler.js';
import { resolveGpuLimits } from './gpu-device.js';
import {
  nativeDeviceIo,
  sendAll,
  VhostUserServer,
  VhostUserSession,
} from '../../vhost-user/server.js';

export type { Logger, LogLevel } from '../../common/log.js';

export interface VhostUserGpuBackendOptions {
  /** The socket to listen on or connect to (roles 'listen' and 'connect'). */
  socketPath?: string;
  role: 'listen' | 'connect' | 'fd';
  /** Role 'fd': the connected vhost-user socket. Taken (closed with the session). */
  fd?: number;
  /** Number of heads; must match QEMU's `max_outputs` (default 1). */
  scanouts?: number;
  /** Preferred mode. When omitted, QEMU's xres/yres (from its display info) is used, else
   * 1280x800. When given, it overrides QEMU's. */
  width?: number;
  height?: number;
  /** Monitor name in the EDID (default "guestfb"). */
  name?: string;
  /** Offer guest blob resources (VIRTIO_GPU_F_RESOURCE_BLOB). Default false: the guest then
   * uses RESOURCE_CREATE_2D + ATTACH_BACKING, the path the demo measures. */
  blob?: boolean;
  /** Per-guest limits on resources and backing (defaults: DEFAULT_LIMITS in gpu-device.ts). */
  limits?: Partial<GpuLimits>;
  /** How much a queue runs before yielding to the other guests (see vhost-user/scheduler.ts). */
  budget?: Partial<QueueBudget>;
  /** The guest's info log rate (default: a burst of 100 lines, then 10 a second). */
  logLimits?: Partial<LogLimits>;
  /**
   * How a requested head size reaches the guest (requestHeadSize). Only QEMU can raise the
   * guest's display-change event (it owns the device config's events_read), so without this
   * sizes are not offered. See qemuDbusDisplay (QEMU's `-display dbus`).
   */
  displayControl?: DisplayControl;
  /** Role 'listen': who may connect to the socket (default: the owner only, mode 0600). */
  socketAccess?: SocketAccess;
  log?: Logger;
  /** For tests: the fd module to use (default: the native addon). */
  fdModule?: FdAddon;
}

export interface VhostUserGpuBackend extends FramebufferSource {
  /** True while a front-end is connected. */
  readonly connected: boolean;
  /**
   * Offers the guest `width`x`height` on a head: the head's mode (GET_DISPLAY_INFO, EDID) changes
   * here, then displayControl has QEMU raise the display-change event, after which the guest
   * asks for the display info again. False without displayControl, a front-end, or with a head
   * or size out of range (1..16384).
   */
  requestHeadSize(headId: number, width: number, height: number): boolean;
}

/** Raises the guest's display-change event for a head (QEMU owns it; see displayControl). */
export interface DisplayControl {
  setHeadSize(headId: number, width: number, height: number): void;
}

export { qemuDbusDisplay, type QemuDbusDisplayOptions } from './qemu-dbus.js';

/** A head index below `headCount` and a size of 1..16384 in integers (what a mode can be). */
export function validHeadSize(
  headCount: number,
  headId: number,
  width: number,
  height: number,
): boolean {
  const inRange = (v: number, min: number, max: number) =>
    Number.isInteger(v) && v >= min && v <= max;
  return inRange(headId, 0, headCount - 1) && inRange(width, 1, 16384) && inRange(height, 1, 16384);
}

const DEFAULT_WIDTH = 1280;
const DEFAULT_HEIGHT = 800;

const defaultLog = linesOf((line) => console.error(line), 'guestfb virtio-gpu ');

export function createVhostUserGpuBackend(
  options: VhostUserGpuBackendOptions,
): VhostUserGpuBackend {
  return new Backend(options);
}

class Backend implements VhostUserGpuBackend {
  private readonly fd: FdAddon;
  private readonly log: Logger;
  private readonly emitter: TypedEmitter<SourceEvents>;
  private readonly defaultHeads: HeadInfo[];
  private currentHeads: HeadInfo[];
  private readonly server: VhostUserServer<Session>;
  private closed = false;
  private readonly totals = { connections: 0, disconnects: 0 };

  constructor(private readonly options: VhostUserGpuBackendOptions) {
    this.fd = options.fdModule ?? fdModule;
    this.log = options.log ?? defaultLog;
    this.emitter = new TypedEmitter<SourceEvents>((error, event) =>
      this.log('error', `listener for ${String(event)} threw: ${String(error)}`),
    );
    const scanouts = options.scanouts ?? 1;
    if (!Number.isInteger(scanouts) || scanouts < 1 || scanouts > 16)
      throw new RangeError('scanouts must be 1..16');
    const width = options.width ?? DEFAULT_WIDTH;
    const height = options.height ?? DEFAULT_HEIGHT;
    for (const v of [width, height]) {
      if (!Number.isInteger(v) || v < 1 || v > 16384)
        throw new RangeError('width/height must be 1..16384');
    }
    // Bad limits fail here, not at the first connection.
    resolveGpuLimits(options.limits);
    resolveQueueBudget(options.budget);
    resolveLogLimits(options.logLimits);
    const name = options.name ?? 'guestfb';
    this.defaultHeads = Array.from({ length: scanouts }, (_, id) => ({
      id,
      width,
      height,
      x: 0,
      y: 0,
      enabled: id === 0,
      name: scanouts > 1 ? `${name}-${id}` : name,
    }));
    this.currentHeads = this.defaultHeads;
    this.server = new VhostUserServer<Session>({
      socketPath: options.socketPath,
      role: options.role,
      connectedFd: options.fd,
      fd: this.fd,
      log: this.log,
      socketAccess: options.socketAccess,
      name: options.name,
      startSession: (conn, ended) => this.startSession(conn, ended),
    });
  }

  private get session(): Session | null {
    return this.server.session;
  }

  private startSession(conn: number, ended: (reason: string) => void): Session {
    this.totals.connections++;
    const session = new Session(
      conn,
      this.fd,
      this.log,
      this.emitter,
      this.options,
      this.defaultHeads,
      (reason) => {
        this.lastSessionStats = this.sessionStats(session);
        ended(reason);
        this.totals.disconnects++;
        this.currentHeads = this.defaultHeads;
        this.emitter.emit('disconnected', reason);
        if (this.options.role !== 'listen') this.log('info', `front-end gone: ${reason}`);
      },
      (heads) => {
        this.currentHeads = heads;
      },
    );
    session.start();
    return session;
  }

  get connected(): boolean {
    return this.session !== null;
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
    return this.session?.device.gpu.heads() ?? this.currentHeads;
  }

  resource(id: number): SourceResource | undefined {
    return this.session?.device.gpu.resource(id);
  }

  scanout(headId: number): ScanoutInfo | null {
    return this.session?.device.gpu.scanout(headId) ?? null;
  }

  requestHeadSize(headId: number, width: number, height: number): boolean {
    const control = this.options.displayControl;
    const session = this.session;
    if (!validHeadSize(this.defaultHeads.length, headId, width, height)) return false;
    if (!control || !session) return false;
    const heads = session.device.gpu
      .heads()
      .map((h) => (h.id === headId ? { ...h, width, height, enabled: true } : { ...h }));
    session.device.gpu.setHeads(heads);
    this.currentHeads = heads;
    control.setHeadSize(headId, width, height);
    return true;
  }

  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean {
    return this.session?.device.gpu.readPixels(resourceId, rect, target) ?? false;
  }

  stats(): SourceStats {
    if (!this.session) return { ...this.totals, ...this.lastSessionStats };
    return { ...this.totals, ...this.sessionStats(this.session) };
  }

  /** Counters of the session that ended last (kept after a disconnect). */
  private lastSessionStats: SourceStats = {};

  private sessionStats(session: Session): SourceStats {
    const device = session.device;
    const commands = [...device.gpu.commandCounts].map(([name, n]) => [`cmd.${name}`, n]);
    return { ...device.counters, ...device.gpu.counters, ...Object.fromEntries(commands) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
  }
}

/** One front-end connection: the generic vhost-user session, the GPU device and the display
 * channel. */
class Session {
  readonly device: VhostUserGpuDevice;
  private readonly connection: VhostUserSession;
  private display: QemuDisplayChannel | null = null;
  private ended = false;

  constructor(
    conn: number,
    private readonly fd: FdAddon,
    private readonly log: Logger,
    emitter: TypedEmitter<SourceEvents>,
    private readonly options: VhostUserGpuBackendOptions,
    private readonly defaultHeads: HeadInfo[],
    onEnd: (reason: string) => void,
    private readonly onHeads: (heads: HeadInfo[]) => void,
  ) {
    this.device = new VhostUserGpuDevice({
      io: nativeDeviceIo(fd),
      heads: defaultHeads,
      emitter,
      log,
      blob: options.blob,
      limits: options.limits,
      logLimits: options.logLimits,
      budget: options.budget,
      onGpuSocket: (gpuFd) => this.attachDisplay(gpuFd),
      canProcess: () => this.display === null || this.display.ready,
    });
    this.emitter = emitter;
    emitter.on('scanoutSet', this.onScanout);
    this.connection = new VhostUserSession(conn, fd, log, this.device, onEnd, () => {
      this.ended = true;
      this.display?.close();
      this.display = null;
      this.emitter.off('scanoutSet', this.onScanout);
    });
  }

  private readonly emitter: TypedEmitter<SourceEvents>;
  private readonly onScanout = (headId: number, scanout: ScanoutInfo | null): void => {
    if (!this.ended)
      this.display?.scanout(headId, scanout?.rect.width ?? 0, scanout?.rect.height ?? 0);
  };

  start(): void {
    this.connection.start();
  }

  end(reason: string): void {
    this.connection.end(reason);
  }
  private attachDisplay(gpuFd: number): void {
    this.display?.close();
    const fixedSize = this.options.width !== undefined || this.options.height !== undefined;
    const channel = new QemuDisplayChannel(
      gpuFd,
      {
        send: (x, data) => sendAll(this.fd, x, data),
        // QEMU's end of its socketpair is a blocking socket (libuv's poll happens to set
        // O_NONBLOCK on it; do not rely on that): only read when there is something to read.
        recv: (x, max) => (this.fd.pollReadable(x, 0) ? this.fd.unixRecv(x, max) : null),
        watchReadable: (x, cb) => this.fd.watchReadable(x, cb),
        close: (x) => this.fd.close(x),
      },
      this.defaultHeads.length,
      (message) => this.log('info', message),
      (modes) => {
        if (this.ended || this.display !== channel) return;
        if (modes) {
          const heads = headsFromModes(this.defaultHeads, modes, fixedSize);
          this.log(
            'info',
            `heads: ${heads.map((h) => `${h.id}:${h.width}x${h.height}${h.enabled ? '' : ' (off)'}`).join(' ')}`,
          );
          this.device.gpu.setHeads(heads);
          this.onHeads(heads);
        }
        this.device.kickAll();
      },
    );
    this.display = channel;
    channel.start();
  }
}
