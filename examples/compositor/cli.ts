/**
 * guestfb-compositor: runs the example compositor until SIGINT/SIGTERM.
 */
import { createCompositor, type Compositor } from './index.js';
import { USAGE, UsageError, parseCli, type CliOptions } from './cli-args.js';
import { runInputScript } from './input-script.js';
import { compositorScriptTarget } from './script-target.js';
import {
  createGuestfbPlugin,
  createVhostUserInputBackend,
  formatStats,
  type GuestfbPlugin,
  type VhostUserInputBackend,
} from '../../plugin/index.js';
import { linesOf } from '../../plugin/common/log.js';
import { createSharedBarSource } from '../../plugin/sources/shared-bar/index.js';
import { createVhostUserGpuBackend } from '../../plugin/sources/virtio-gpu/index.js';
import type { FramebufferSource } from '../../plugin/sources/types.js';

function main(): void {
  let options;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`guestfb-compositor: ${error.message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!options.headless && !options.drm) {
    process.stderr.write('guestfb-compositor: no --headless or --drm given; running headless\n');
  }
  if (!process.env.XDG_RUNTIME_DIR) {
    process.stderr.write('guestfb-compositor: XDG_RUNTIME_DIR is not set\n');
    process.exitCode = 1;
    return;
  }
  const log = (message: string): void => {
    process.stderr.write(`[${new Date().toISOString()}] ${message}\n`);
  };
  let compositor;
  try {
    compositor = createCompositor({
      outputs: options.outputs,
      socket: options.socket,
      screenshotDir: options.screenshotDir,
      screenshotEveryMs: options.screenshotEveryMs,
      log,
      drm: options.drm,
    });
  } catch (error) {
    // A missing or busy display device is a user-facing failure, not a crash.
    process.stderr.write(
      `guestfb-compositor: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
    return;
  }
  const outputs = compositor.scene.outputs
    .map((o) => o.config)
    .map((o) => `${o.name} ${o.width}x${o.height}@${o.refreshMhz / 1000}Hz`)
    .join(', ');
  process.stdout.write(
    `guestfb-compositor listening on ${compositor.socketName} (${outputs})\n` +
      `connect with: WAYLAND_DISPLAY=${compositor.socketName} <wayland client>\n`,
  );
  let guestfb: LoadedGuestfb | null;
  try {
    guestfb = startGuestfb(compositor, options, log);
  } catch (error) {
    process.stderr.write(`guestfb-compositor: ${(error as Error).message}\n`);
    process.exitCode = 1;
    void compositor.close();
    return;
  }
  if (options.inputScript !== undefined) {
    const script = options.inputScript;
    const directory = options.screenshotDir ?? process.cwd();
    void runInputScript(script, compositorScriptTarget(compositor, directory, log), log).then(
      ({ lines, errors }) =>
        log(`input script ${script}: ended after ${lines} line(s), ${errors} bad`),
      (error: unknown) => log(`input script ${script}: ${String(error)}`),
    );
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    const finish = async (): Promise<void> => {
      if (options.screenshotDir) {
        for (const output of compositor.scene.outputs) {
          log(`final screenshot: ${compositor.saveScreenshot(output.name)}`);
        }
      }
      const stats = guestfb?.plugin.stats();
      await compositor.close();
      for (const source of guestfb?.sources ?? []) source.close();
      for (const { name, sink } of guestfb?.inputs ?? []) {
        process.stdout.write(`guestfb ${name} input: ${JSON.stringify(sink.stats())}\n`);
        sink.close();
      }
      if (stats) process.stdout.write(`guestfb statistics:\n${formatStats(stats)}\n`);
    };
    finish().then(
      () => process.exit(0),
      (error: unknown) => {
        log(`shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

interface LoadedGuestfb {
  plugin: GuestfbPlugin;
  sources: FramebufferSource[];
  inputs: { name: string; sink: VhostUserInputBackend }[];
}

/**
 * Loads guestfb in-process with a shared BAR source per --ivshmem and a vhost-user GPU back-end
 * per --vhost-user-gpu (sources are closed after the compositor); null when none was asked for.
 */
function startGuestfb(
  compositor: Compositor,
  options: Pick<
    CliOptions,
    'ivshmem' | 'vhostUserGpu' | 'vhostUserInput' | 'socketAccess' | 'ivshmemPeers' | 'gpuLimits'
  >,
  log: (message: string) => void,
): LoadedGuestfb | null {
  const sources: { name: string; source: FramebufferSource }[] = [];
  const inputs: { name: string; sink: VhostUserInputBackend }[] = [];
  const open = <T>(flag: string, socket: string, create: () => T): T => {
    try {
      return create();
    } catch (error) {
      for (const entry of sources) entry.source.close();
      for (const entry of inputs) entry.sink.close();
      throw new Error(`${flag} ${socket}: ${(error as Error).message}`);
    }
  };
  for (const spec of options.ivshmem) {
    const source = open('--ivshmem', spec.socket, () =>
      createSharedBarSource({
        ivshmemSocket: spec.socket,
        barSize: spec.barSize,
        name: spec.name,
        socketAccess: options.socketAccess,
        maxPeers: options.ivshmemPeers,
        log: linesOf(log, `guestfb ${spec.name}: `, { showLevel: false }),
      }),
    );
    log(
      `guestfb ${spec.name}: ivshmem server on ${spec.socket} (QEMU: -chardev socket,id=ivsh,` +
        `path=${spec.socket} -device ivshmem-doorbell,chardev=ivsh,vectors=1)`,
    );
    sources.push({ name: spec.name, source });
  }
  for (const spec of options.vhostUserGpu) {
    const source = open('--vhost-user-gpu', spec.socket, () =>
      createVhostUserGpuBackend({
        socketPath: spec.socket,
        role: 'listen',
        name: spec.name,
        scanouts: spec.heads,
        width: spec.width,
        height: spec.height,
        socketAccess: options.socketAccess,
        limits: options.gpuLimits.limits,
        budget: options.gpuLimits.budget,
        logLimits: options.gpuLimits.log,
        log: linesOf(log, `guestfb ${spec.name}: `, { showLevel: false }),
      }),
    );
    log(
      `guestfb ${spec.name}: vhost-user GPU back-end on ${spec.socket} (QEMU: -chardev ` +
        `socket,id=gpu,path=${spec.socket} -device vhost-user-gpu-pci,chardev=gpu)`,
    );
    sources.push({ name: spec.name, source });
  }
  for (const spec of options.vhostUserInput) {
    const sink = open('--vhost-user-input', spec.socket, () =>
      createVhostUserInputBackend({
        socketPath: spec.socket,
        role: 'listen',
        socketAccess: options.socketAccess,
        guestName: spec.name,
        log: linesOf(log, `guestfb ${spec.name} input: `, { showLevel: false }),
      }),
    );
    log(
      `guestfb ${spec.name}: vhost-user input back-end on ${spec.socket} (QEMU: -chardev ` +
        `socket,id=inp,path=${spec.socket} -device vhost-user-input-pci,chardev=inp)`,
    );
    inputs.push({ name: spec.name, sink });
  }
  if (sources.length === 0) return null;
  const plugin = createGuestfbPlugin({
    sources,
    inputs,
    log: (message) => log(`guestfb: ${message}`),
  });
  void compositor.use(plugin);
  return { plugin, sources: sources.map((entry) => entry.source), inputs };
}

main();
