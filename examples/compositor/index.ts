/**
 * The example compositor: headless outputs rendered in software, the core Wayland protocols, and
 * plugins that connect as in-process clients over a socketpair.
 *
 *   const compositor = createCompositor({ outputs: [{ name: 'HEADLESS-1', width: 1280,
 *     height: 720, refreshMhz: 60000 }], socket: 'wayland-guestfb' });
 *   await compositor.use(myPlugin);
 *   const png = compositor.screenshot('HEADLESS-1');
 */
import { fd } from '../../native/fd.js';
import type { NativeClient } from '../../native/index.js';
import { Display, type Global } from '../../protocol-xml/runtime/server.js';
import { Scene, type OutputConfig } from './core/scene.js';
import { Seat } from './core/seat.js';
import { CompiledFeedback } from './dmabuf/feedback.js';
import { defaultDmabufFormats } from './dmabuf/formats.js';
import { DrmBackend, type DrmBackendOptions, type DrmBackendStats } from './drm/index.js';
import { createKeymapFile } from './keymap.js';
import type { Plugin } from './plugin.js';
import { describeClient, type ServerContext } from './protocol/context.js';
import { createCompositorGlobal } from './protocol/wl-compositor.js';
import { createOutputGlobal } from './protocol/wl-output.js';
import { createSeatGlobal } from './protocol/wl-seat.js';
import { createShmGlobal } from './protocol/wl-shm.js';
import { createSubcompositorGlobal } from './protocol/wl-subcompositor.js';
import { createPresentationGlobal } from './protocol/wp-presentation.js';
import { createViewporterGlobal } from './protocol/wp-viewporter.js';
import { createXdgWmBaseGlobal } from './protocol/xdg-wm-base.js';
import { createLinuxDmabufGlobal, findMainDevice } from './protocol/zwp-linux-dmabuf.js';
import { encodePng, ScreenshotWriter } from './render/screenshot.js';

export type { OutputConfig } from './core/scene.js';
export type { Plugin, PluginContext } from './plugin.js';
export type { DrmBackendOptions, DrmBackendStats } from './drm/index.js';

export interface CompositorOptions {
  outputs: OutputConfig[];
  /** Socket name in XDG_RUNTIME_DIR; omitted: the first free wayland-N; false: no socket. */
  socket?: string | false;
  /** Folder for periodic screenshots (`<output-name>-<sequence>.png`). */
  screenshotDir?: string;
  /** Screenshot period; needs screenshotDir. */
  screenshotEveryMs?: number;
  /** Background colour 0xRRGGBB where no surface covers an output (default 0x202830). */
  background?: number;
  /** Log sink (default: stderr with a prefix). */
  log?: (message: string) => void;
  /** dev_t for linux-dmabuf main_device (default: the first render node, else 0). */
  mainDevice?: bigint;
  /** Drive a KMS device (drm/backend.ts): its mode becomes the first output, before `outputs`;
   * linux-dmabuf feedback then names that device and adds a scanout tranche. */
  drm?: DrmBackendOptions;
}

export interface CompositorStats {
  /** Frame callbacks sent (all surfaces, all outputs). */
  frameCallbacksDone: number;
  /** Ticks per output. */
  ticks: Record<string, number>;
  /** Repaints (ticks with damage) per output. */
  repaints: Record<string, number>;
  /** Connected clients. */
  clients: number;
  windows: number;
  /** The KMS backend's counters (directScanoutFrames, composedFrames, ...), when there is one. */
  drm?: DrmBackendStats;
}

export interface Compositor {
  /** The socket clients connect to (WAYLAND_DISPLAY), or null without one. */
  readonly socketName: string | null;
  readonly display: Display;
  readonly scene: Scene;
  /** Input: move the pointer, press buttons and keys (output coordinates, evdev codes). */
  readonly seat: Seat;
  /** Starts a plugin on a fresh in-process client connection. Resolves when start() settles;
   * never rejects (failures are logged and the plugin's client destroyed). */
  use(plugin: Plugin): Promise<boolean>;
  /** Composes pending damage and returns the output's image as PNG. */
  screenshot(outputName: string): Buffer;
  /** Writes a screenshot into screenshotDir (or `directory`); returns the file path. */
  saveScreenshot(outputName: string, directory?: string): string;
  /** A new client on one end of a socketpair; returns the other end (caller owns it). */
  connectClient(): { fd: number; client: NativeClient };
  stats(): CompositorStats;
  /** The KMS backend, when `drm` was given. */
  readonly drm: DrmBackend | null;
  /** Stops plugins, destroys every client and the display, closes the feedback and keymap. */
  close(): Promise<void>;
}

export function createCompositor(options: CompositorOptions): Compositor {
  const log =
    options.log ?? ((message: string) => process.stderr.write(`[compositor] ${message}\n`));
  if (options.screenshotEveryMs !== undefined && !options.screenshotDir) {
    throw new Error('screenshotEveryMs needs screenshotDir');
  }
  const writer = options.screenshotDir ? new ScreenshotWriter(options.screenshotDir) : null;
  const drm = options.drm ? DrmBackend.open(options.drm, log) : null;
  const dmabufFormats = defaultDmabufFormats();
  let scene: Scene;
  let dmabufFeedback: CompiledFeedback;
  try {
    scene = new Scene(drm ? [drm.outputConfig, ...options.outputs] : options.outputs, {
      background: options.background,
      log,
    });
    dmabufFeedback = drm
      ? drm.createFeedback(dmabufFormats, fd)
      : new CompiledFeedback(dmabufFormats, options.mainDevice ?? findMainDevice(), fd);
  } catch (error) {
    drm?.close();
    throw error;
  }
  let keymap: { fd: number; size: number };
  try {
    keymap = createKeymapFile(fd);
  } catch (error) {
    dmabufFeedback.destroy();
    drm?.close();
    throw error;
  }
  const display = Display.create();
  const clients = new Map<number, NativeClient>();
  const noteClient = (client: NativeClient): void => {
    if (clients.has(client.id)) return;
    clients.set(client.id, client);
    log(`${describeClient(client)} connected`);
    client.onDestroy(() => {
      clients.delete(client.id);
      log(`${describeClient(client)} disconnected`);
    });
  };
  display.onError((error, client) => {
    const who = client ? describeClient(client) : 'display';
    log(
      `${who}: handler error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  });
  const seat = new Seat(display, scene);
  const context: ServerContext = {
    display,
    scene,
    seat,
    fd,
    dmabufFormats,
    dmabufFeedback,
    keymap,
    outputResources: new Map(),
    log,
    noteClient,
  };

  const globals: Global[] = [
    createCompositorGlobal(context),
    createSubcompositorGlobal(context),
    createShmGlobal(context),
    createXdgWmBaseGlobal(context),
    createSeatGlobal(context),
    createViewporterGlobal(context),
    createPresentationGlobal(context),
    createLinuxDmabufGlobal(context),
    ...scene.outputs.map((output) => createOutputGlobal(context, output)),
  ];
  void globals;

  let socketName: string | null = null;
  if (options.socket !== false) {
    socketName = display.addSocket(options.socket === undefined ? undefined : options.socket);
  }

  const screenshotNow = (outputName: string): Buffer => {
    const output = scene.output(outputName);
    if (!output) throw new Error(`no output named "${outputName}"`);
    if (drm && output === scene.outputs[0]) drm.prepareScreenshot();
    scene.render(output);
    return encodePng(output.image);
  };
  const save = (outputName: string, directory?: string): string => {
    const target = directory ? new ScreenshotWriter(directory) : writer;
    if (!target) throw new Error('no screenshot directory configured');
    return target.write(outputName, screenshotNow(outputName));
  };

  let screenshotTimer: NodeJS.Timeout | null = null;
  if (writer && options.screenshotEveryMs) {
    screenshotTimer = setInterval(() => {
      for (const output of scene.outputs) {
        try {
          save(output.name);
        } catch (error) {
          log(`screenshot of ${output.name} failed: ${String(error)}`);
        }
      }
    }, options.screenshotEveryMs);
  }

  const plugins: { plugin: Plugin; controller: AbortController; client: NativeClient }[] = [];
  let closed = false;
  scene.start();
  try {
    drm?.start(scene, scene.outputs[0]);
  } catch (error) {
    if (screenshotTimer) clearInterval(screenshotTimer);
    scene.stop();
    drm?.close();
    display.destroy();
    dmabufFeedback.destroy();
    fd.close(keymap.fd);
    throw error;
  }

  const connectClient = (): { fd: number; client: NativeClient } => {
    const [serverEnd, clientEnd] = fd.socketpair();
    let client: NativeClient;
    try {
      client = display.createClient(serverEnd); // takes serverEnd
    } catch (error) {
      fd.close(clientEnd);
      throw error;
    }
    noteClient(client);
    return { fd: clientEnd, client };
  };

  return {
    socketName,
    display,
    scene,
    seat,
    drm,
    connectClient,

    async use(plugin: Plugin): Promise<boolean> {
      if (closed) throw new Error('compositor is closed');
      const { fd: pluginFd, client } = connectClient();
      const controller = new AbortController();
      const entry = { plugin, controller, client };
      plugins.push(entry);
      client.onDestroy(() => controller.abort());
      const pluginLog = (message: string): void => log(`[${plugin.name}] ${message}`);
      try {
        await plugin.start({ waylandFd: pluginFd, log: pluginLog, signal: controller.signal });
        log(`plugin ${plugin.name} started on ${describeClient(client)}`);
        return true;
      } catch (error) {
        log(
          `plugin ${plugin.name} failed to start: ${error instanceof Error ? error.message : String(error)}`,
        );
        controller.abort();
        if (!client.destroyed) client.destroy();
        plugins.splice(plugins.indexOf(entry), 1);
        return false;
      }
    },

    screenshot: screenshotNow,
    saveScreenshot: save,

    stats(): CompositorStats {
      return {
        frameCallbacksDone: scene.frameCallbacksDone,
        ticks: Object.fromEntries(scene.outputs.map((o) => [o.name, Number(o.sequence)])),
        repaints: Object.fromEntries(scene.outputs.map((o) => [o.name, o.repaints])),
        clients: clients.size,
        windows: scene.windows.length,
        ...(drm ? { drm: drm.stats() } : {}),
      };
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      if (screenshotTimer) clearInterval(screenshotTimer);
      for (const { plugin, controller } of plugins.splice(0)) {
        controller.abort();
        try {
          await plugin.stop?.();
        } catch (error) {
          log(`plugin ${plugin.name} failed to stop: ${String(error)}`);
        }
      }
      scene.stop();
      drm?.close();
      display.destroy();
      dmabufFeedback.destroy();
      fd.close(keymap.fd);
    },
  };
}
