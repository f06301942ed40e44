/**
 * guestfb's plugin API.
 *
 *   const plugin = createGuestfbPlugin({ sources: [createPatternSource({ width, height })] });
 *   compositor.use(plugin);                  // in-process: the compositor hands us a socket fd
 *   const running = await runStandalone({ sources });   // or as a client of WAYLAND_DISPLAY
 *
 * Sources are owned by the caller (close them after stopping the plugin). Statistics (frames,
 * bytes copied, live dma-bufs, fallback reason, handoff latency) come from `stats()`.
 */
import { fd } from '../native/fd.js';
import { WaylandClient, type ConnectionError } from './present/connection.js';
import { linesOf, type LineLog } from './common/log.js';
import { Presenter, type NamedSource } from './present/presenter.js';
import type { FramebufferSource } from './sources/types.js';
import { PluginStats, type StatsSnapshot } from './stats.js';
import type { UdmabufExporter } from './dmabuf/index.js';
import type { GuestInputSink } from './guest-input.js';
import type { CopyLimits } from './present/copy-budget.js';

export { createPatternSource, PatternSource, patternPixel } from './sources/pattern.js';
export {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
  type VhostUserGpuBackendOptions,
} from './sources/virtio-gpu/index.js';
export {
  createSharedBarSource,
  type SharedBarSource,
  type SharedBarSourceOptions,
} from './sources/shared-bar/index.js';
export type { FramebufferSource } from './sources/types.js';
export type { StatsSnapshot } from './stats.js';
export { formatStats } from './stats.js';
export type { NamedSource } from './present/presenter.js';
export type { GuestInputSink } from './guest-input.js';
export type { Logger, LogLevel, LineLog } from './common/log.js';
export { linesOf } from './common/log.js';
export {
  createVhostUserInputBackend,
  type VhostUserInputBackend,
  type VhostUserInputBackendOptions,
} from './virtio-input/index.js';

/** A guest's input device: every window of guest `name` feeds `sink`. */
export interface NamedInput {
  name: string;
  sink: GuestInputSink;
}

export interface GuestfbPluginOptions {
  /** Framebuffer sources; a bare source is titled with `guestName`. */
  sources: readonly (FramebufferSource | NamedSource)[];
  /** Guest name for window titles ("<guest name> — <head name>"); default "guestfb". */
  guestName?: string;
  /** udmabuf device path, false to disable (wl_shm fallback), or an exporter to share. */
  udmabuf?: string | false | UdmabufExporter;
  /** Log lines (fallbacks, errors); default: the context's log or stderr. */
  log?: LineLog;
  /** Called when the compositor connection fails (protocol error, hang-up). */
  onError?: (error: ConnectionError) => void;
  /** Highest zwp_linux_dmabuf_v1 version to bind (default 4). */
  maxDmabufVersion?: number;
  /**
   * Limits of each source's copy-fallback buffers: `maxBuffers` (default 16), `maxBytes` (512 MiB
   * of shm), `maxMappings` (1024 mappings of guest memory). Least recently shown buffers are
   * evicted first; a buffer that cannot fit is not shown (logged).
   */
  copyLimits?: Partial<CopyLimits>;
  /**
   * Without udmabuf, show contiguous guest RAM through a wl_shm pool on the guest memfd itself
   * (no copy). Off by default: the compositor would see, read-write, the guest RAM from byte 0 of
   * the memfd up to the framebuffer. Shared-BAR buffers need no opt-in (the BAR is display memory).
   */
  shmOnGuestRam?: boolean;
  /**
   * Input devices (e.g. `createVhostUserInputBackend`), by guest name: keyboard and pointer
   * input on every window of that guest goes to its sink. Owned by the caller.
   */
  inputs?: readonly NamedInput[];
}

/** What a compositor hands a plugin when it starts it (the example compositor's Plugin API). */
export interface PluginContext {
  /** A connected Wayland socket; the plugin takes ownership. */
  waylandFd: number;
  log?: LineLog;
  /** Aborted when the compositor stops or drops the plugin's client: the plugin stops. */
  signal?: AbortSignal;
}

export interface GuestfbPlugin {
  readonly name: string;
  /** Connects over `context.waylandFd` and starts presenting. */
  start(context: PluginContext): Promise<void>;
  /** Destroys windows and buffers and disconnects. Sources stay open (the caller owns them). */
  stop(): void;
  stats(): StatsSnapshot;
  /** Resolves once the compositor has processed every request sent so far. */
  settle(): Promise<void>;
  /** The live presenter while started (tests inspect windows and buffers). */
  readonly presenter: Presenter | null;
  readonly client: WaylandClient | null;
}

function isNamed(entry: FramebufferSource | NamedSource): entry is NamedSource {
  return 'source' in entry && 'name' in entry && typeof entry.name === 'string';
}

function defaultLog(message: string): void {
  process.stderr.write(`guestfb: ${message}\n`);
}

class GuestfbPluginImpl implements GuestfbPlugin {
  readonly name = 'guestfb';
  private readonly statsObject = new PluginStats();
  private presenterObject: Presenter | null = null;
  private clientObject: WaylandClient | null = null;
  private log: LineLog;
  private stopped = false;

  constructor(private readonly options: GuestfbPluginOptions) {
    this.log = options.log ?? defaultLog;
  }

  get presenter(): Presenter | null {
    return this.presenterObject;
  }

  get client(): WaylandClient | null {
    return this.clientObject;
  }

  async start(context: PluginContext): Promise<void> {
    if (!this.options.log && context.log) this.log = context.log;
    if (context.signal?.aborted) {
      fd.close(context.waylandFd);
      return;
    }
    context.signal?.addEventListener('abort', () => this.stop(), { once: true });
    await this.startWith(await WaylandClient.fromFd(context.waylandFd));
  }

  /** @internal */
  async startWith(client: WaylandClient): Promise<void> {
    if (this.clientObject) {
      client.disconnect();
      throw new Error('the guestfb plugin is already started');
    }
    this.stopped = false;
    this.clientObject = client;
    client.onError((error) => {
      this.log(`compositor connection failed: ${error.message}`);
      // Nothing more can be shown: let go of the sources, buffers and fds.
      if (this.clientObject === client) this.stop();
      this.options.onError?.(error);
    });
    try {
      const presenter = await Presenter.create(client, {
        stats: this.statsObject,
        log: linesOf(this.log, '', { showLevel: false }),
        udmabuf: this.options.udmabuf,
        maxDmabufVersion: this.options.maxDmabufVersion,
        copyLimits: this.options.copyLimits,
        shmOnGuestRam: this.options.shmOnGuestRam,
        inputs: new Map((this.options.inputs ?? []).map((input) => [input.name, input.sink])),
      });
      this.presenterObject = presenter;
      if (this.stopped) return;
      if (presenter.udmabufRefusal) this.log(`udmabuf: ${presenter.udmabufRefusal}`);
      const guestName = this.options.guestName ?? 'guestfb';
      for (const entry of this.options.sources) {
        presenter.addSource(isNamed(entry) ? entry : { name: guestName, source: entry });
      }
      client.flush();
    } catch (error) {
      this.stop();
      throw error;
    }
  }

  stop(): void {
    this.stopped = true;
    const presenter = this.presenterObject;
    const client = this.clientObject;
    this.presenterObject = null;
    this.clientObject = null;
    try {
      presenter?.close();
    } catch (error) {
      // A dead connection may refuse requests; the fds and mappings are freed regardless.
      if (!client?.failed) throw error;
    } finally {
      client?.disconnect();
    }
  }

  stats(): StatsSnapshot {
    return this.statsObject.snapshot();
  }

  async settle(): Promise<void> {
    if (!this.clientObject) return;
    await this.clientObject.roundtrip();
  }
}

export function createGuestfbPlugin(options: GuestfbPluginOptions): GuestfbPlugin {
  return new GuestfbPluginImpl(options);
}

export interface StandaloneOptions extends GuestfbPluginOptions {
  /** Wayland display name; default WAYLAND_DISPLAY. */
  display?: string;
}

/** Runs guestfb as an ordinary client of a compositor; resolves once it is presenting. */
export async function runStandalone(options: StandaloneOptions): Promise<GuestfbPlugin> {
  const plugin = new GuestfbPluginImpl(options);
  await plugin.startWith(await WaylandClient.connect(options.display));
  return plugin;
}
