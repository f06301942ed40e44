/**
 * `npm run demo`: boots a real guest under QEMU with guestfb as its GPU (vhost-user-gpu) and shows
 * the guest's display: by default a Debian desktop (weston, examples/qemu/desktop-image.ts), or
 * the test guest's pattern and console (`--guest pattern`). With a compositor of your own (WAYLAND_DISPLAY set and reachable) guestfb
 * joins it as a client; otherwise the example compositor runs headless in this process and writes
 * screenshots. Ctrl-C stops everything and prints guestfb's statistics.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { createCompositor, type Compositor } from './compositor/index.js';
import { bootGuest, ensureGuest, ensureQemu, probeKvm, type QemuProcess } from './qemu/qemu.js';
import { desktopBootArgs, ensureDesktopGuest } from './qemu/desktop-image.js';
import { startPrivateBus, type PrivateBus } from './qemu/dbus.js';
import {
  createVhostUserInputBackend,
  type VhostUserInputBackend,
} from '../plugin/virtio-input/index.js';
import {
  createGuestfbPlugin,
  formatStats,
  runStandalone,
  type GuestfbPlugin,
  type NamedSource,
} from '../plugin/index.js';
import {
  createVhostUserGpuBackend,
  qemuDbusDisplay,
  type VhostUserGpuBackend,
} from '../plugin/sources/virtio-gpu/index.js';
import { linesOf } from '../plugin/common/log.js';
import { createSharedBarSource, type SharedBarSource } from '../plugin/sources/shared-bar/index.js';

const HELP = `Usage: npm run demo -- [options]

Boots a guest under QEMU 10 with guestfb as its vhost-user GPU and shows its display through
guestfb. The default guest is a Debian desktop: the host's weston (DRM back-end, pixman renderer,
desktop shell) with a weston-terminal, on the guest's virtio-gpu, udev and libinput running.
guestfb is also the guest's keyboard and tablet (vhost-user-input): type and click into its
window. Resizing the window offers the guest that size (through QEMU's D-Bus display on a
private dbus-daemon); the guest's console follows, weston 10 keeps the mode it started with.

Options:
  --guest KIND           desktop (default with --source virtio-gpu): Debian's weston desktop;
                         pattern: the test guest (console text and a moving test pattern)
  --duration SECONDS     stop after this long (default: run until Ctrl-C)
  --screenshot-dir DIR   where the headless compositor writes PNGs (default: ./demo-screenshots)
  --screenshot-every MS  screenshot period (default 2000)
  --size WxH             the guest's display mode (default 1280x800)
  --scanouts N           guest heads, one window each (default 1)
  --headless             ignore WAYLAND_DISPLAY and use the built-in headless compositor
  --source KIND          virtio-gpu (default): guestfb is the guest's vhost-user GPU;
                         ivshmem: no GPU, the guest's barwriter draws into an ivshmem BAR
                         guestfb serves (ivshmem-doorbell); both: one window for each
                         (ivshmem and both run the pattern guest)
  -h, --help             this text

The first run downloads QEMU 10 and a guest kernel into \${XDG_CACHE_HOME:-~/.cache}/guestfb
(a few hundred MB); later runs start in seconds, plus the guest's boot under emulation: about
10 s for the pattern guest, about a minute to the desktop's first frame (more on a busy machine).
The desktop shares the host's root read-only with the guest (virtio-9p, a tmpfs on top).
`;

interface DemoOptions {
  durationS: number;
  screenshotDir: string;
  screenshotEveryMs: number;
  width: number;
  height: number;
  scanouts: number;
  headless: boolean;
  source: 'virtio-gpu' | 'ivshmem' | 'both';
  guest: 'desktop' | 'pattern';
}

function fail(message: string): never {
  process.stderr.write(`demo: ${message}\n(see --help)\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): DemoOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        duration: { type: 'string' },
        'screenshot-dir': { type: 'string' },
        'screenshot-every': { type: 'string' },
        size: { type: 'string' },
        scanouts: { type: 'string' },
        headless: { type: 'boolean' },
        source: { type: 'string' },
        guest: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const integer = (text: string | undefined, fallback: number, name: string, min: number) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) fail(`--${name} must be an integer >= ${min}`);
    return value;
  };
  const size = /^(\d+)x(\d+)$/.exec(values.size ?? '1280x800');
  if (!size) fail('--size must look like 1280x800');
  const width = Number(size[1]);
  const height = Number(size[2]);
  if (width < 64 || height < 64 || width > 8192 || height > 8192)
    fail('--size must be between 64x64 and 8192x8192');
  const source = values.source ?? 'virtio-gpu';
  if (source !== 'virtio-gpu' && source !== 'ivshmem' && source !== 'both') {
    fail('--source must be virtio-gpu, ivshmem or both');
  }
  const guest = values.guest ?? (source === 'virtio-gpu' ? 'desktop' : 'pattern');
  if (guest !== 'desktop' && guest !== 'pattern') fail('--guest must be desktop or pattern');
  if (guest === 'desktop' && source !== 'virtio-gpu') {
    fail('the desktop guest needs --source virtio-gpu (ivshmem and both run the pattern guest)');
  }
  return {
    source,
    guest,
    durationS: integer(values.duration, 0, 'duration', 0),
    screenshotDir: path.resolve(values['screenshot-dir'] ?? 'demo-screenshots'),
    screenshotEveryMs: integer(values['screenshot-every'], 2000, 'screenshot-every', 100),
    width,
    height,
    scanouts: integer(values.scanouts, 1, 'scanouts', 1),
    headless: values.headless ?? false,
  };
}

/** A compositor of the user's own is used when WAYLAND_DISPLAY names a live socket. */
function userCompositorSocket(): string | null {
  const display = process.env.WAYLAND_DISPLAY;
  if (!display) return null;
  const runtime = process.env.XDG_RUNTIME_DIR ?? '';
  const socket = path.isAbsolute(display) ? display : path.join(runtime, display);
  return existsSync(socket) ? display : null;
}

const step = (message: string) => process.stderr.write(`demo: ${message}\n`);

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  step('preparing QEMU 10 and the guest image (cached after the first run)');
  const tier = await ensureQemu((message) => step(message));
  const desktopGuest =
    options.guest === 'desktop' ? await ensureDesktopGuest((message) => step(message)) : null;
  const guest = desktopGuest ?? (await ensureGuest((message) => step(message)));
  // KVM where it really runs a guest (the probe's verdict is cached), software emulation otherwise.
  await probeKvm(tier, guest, (message) => step(message));

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-demo-'));
  const gpuSocket = path.join(workDir, 'gpu.sock');
  const ivshmemSocket = path.join(workDir, 'ivshmem.sock');
  const useGpu = options.source !== 'ivshmem';
  const useBar = options.source !== 'virtio-gpu';
  // Resize: a window resized by the compositor is offered to the guest through QEMU's D-Bus
  // display, on a bus of its own (README "Resize").
  let bus: PrivateBus | null = null;
  if (useGpu) {
    try {
      bus = await startPrivateBus(workDir);
    } catch (error) {
      step(`no resize: ${(error as Error).message}`);
    }
  }
  const logGpu = linesOf(step, 'virtio-gpu ');
  const backend: VhostUserGpuBackend | null = useGpu
    ? createVhostUserGpuBackend({
        socketPath: gpuSocket,
        role: 'listen',
        scanouts: options.scanouts,
        width: options.width,
        height: options.height,
        name: 'demo',
        ...(bus ? { displayControl: qemuDbusDisplay({ address: bus.address, log: logGpu }) } : {}),
        log: logGpu,
      })
    : null;
  // Keyboard and pointer on the guest's windows go to the guest (one virtio-input device).
  const inputSocket = path.join(workDir, 'input.sock');
  const input: VhostUserInputBackend | null = useGpu
    ? createVhostUserInputBackend({
        socketPath: inputSocket,
        role: 'listen',
        log: linesOf(step, 'virtio-input '),
      })
    : null;
  const inputs = input ? [{ name: 'demo', sink: input }] : [];
  const bar: SharedBarSource | null = useBar
    ? createSharedBarSource({
        ivshmemSocket,
        name: 'ivshmem',
        log: (_level, message) => step(`shared BAR: ${message}`),
      })
    : null;
  const sources: NamedSource[] = [
    ...(backend ? [{ name: 'demo', source: backend }] : []),
    ...(bar ? [{ name: 'demo-bar', source: bar }] : []),
  ];

  let compositor: Compositor | null = null;
  let plugin: GuestfbPlugin;
  const display = options.headless ? null : userCompositorSocket();
  if (display) {
    step(`showing the guest in your compositor (WAYLAND_DISPLAY=${display})`);
    plugin = await runStandalone({ display, sources, inputs });
  } else {
    mkdirSync(options.screenshotDir, { recursive: true });
    // A headless session (CI, ssh) may have no runtime dir: the compositor's socket needs one.
    if (!process.env.XDG_RUNTIME_DIR || !existsSync(process.env.XDG_RUNTIME_DIR)) {
      process.env.XDG_RUNTIME_DIR = path.join(workDir, 'runtime');
      mkdirSync(process.env.XDG_RUNTIME_DIR, { mode: 0o700 });
    }
    compositor = createCompositor({
      outputs: [
        { name: 'HEADLESS-1', width: options.width, height: options.height, refreshMhz: 60000 },
      ],
      screenshotDir: options.screenshotDir,
      screenshotEveryMs: options.screenshotEveryMs,
      log: (message) => step(`compositor: ${message}`),
    });
    plugin = createGuestfbPlugin({ sources, inputs });
    await compositor.use(plugin);
    step(`headless compositor on WAYLAND_DISPLAY=${compositor.socketName ?? '(none)'}`);
    step(`screenshots every ${options.screenshotEveryMs} ms in ${options.screenshotDir}`);
  }

  const desktop = desktopGuest ? desktopBootArgs(desktopGuest) : null;
  step(
    desktop
      ? 'booting the desktop guest (about a minute to its first frame under software emulation)'
      : 'booting the guest (about 10 s under software emulation)',
  );
  const bootStarted = Date.now();
  const onFirstFlush = () => {
    backend?.off('flush', onFirstFlush);
    step(`first frame ${((Date.now() - bootStarted) / 1000).toFixed(1)} s after QEMU started`);
  };
  backend?.on('flush', onFirstFlush);
  const barwriter = `barwriter --width ${options.width} --height ${options.height} --frames 0`;
  const qemu: QemuProcess = bootGuest(tier, guest, {
    ...(useGpu ? { gpuSocket } : { gpuDevice: 'none' }),
    ...(useBar ? { ivshmemSocket } : {}),
    ...(options.source === 'ivshmem' ? { guestCommand: barwriter } : {}),
    ...(options.source === 'both'
      ? {
          guestCommand: `${barwriter} & drawpattern --output last --frames 0 --mode ${options.width}x${options.height}`,
        }
      : {}),
    ...(desktop ? { ...desktop, memoryMb: 1024, fbcon: false } : {}),
    extraArgs: [
      ...(desktop?.extraArgs ?? []),
      ...(input
        ? [
            '-chardev',
            `socket,id=inp,path=${inputSocket}`,
            '-device',
            'vhost-user-input-pci,chardev=inp',
          ]
        : []),
      ...(bus ? ['-display', `dbus,addr=${bus.address}`] : []),
    ],
    scanouts: options.scanouts,
    width: options.width,
    height: options.height,
  });
  if (desktop) {
    void qemu.waitForConsole(/guestfb-desktop: weston is up/).then(
      () =>
        step(`weston is up ${((Date.now() - bootStarted) / 1000).toFixed(1)} s after QEMU started`),
      () => undefined,
    );
  } else {
    void qemu.waitForConsole(/drawpattern: frame 0 shown|barwriter: first frame/).then(
      () => step('the guest is drawing; its display is on screen'),
      () => undefined,
    );
  }

  let stopping = false;
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    step(`stopping (${reason})`);
    // The last picture of the guest, taken while it is still connected.
    if (compositor) step(`last screenshot: ${compositor.saveScreenshot('HEADLESS-1')}`);
    qemu.kill('SIGTERM');
    await Promise.race([qemu.exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
    qemu.kill('SIGKILL');
    const stats = plugin.stats();
    plugin.stop();
    backend?.close();
    input?.close();
    await bus?.close();
    bar?.close();
    await compositor?.close();
    rmSync(workDir, { recursive: true, force: true });
    process.stdout.write(`${formatStats(stats)}\n`);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('Ctrl-C'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  void qemu.exited.then(({ code, signal }) => {
    if (!stopping) {
      step(`QEMU exited (code ${code}, signal ${signal}); last console lines:`);
      process.stderr.write(`${qemu.console().split('\n').slice(-15).join('\n')}\n`);
      void stop('QEMU exited');
    }
  });
  if (options.durationS > 0)
    setTimeout(() => void stop('duration reached'), options.durationS * 1000);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
