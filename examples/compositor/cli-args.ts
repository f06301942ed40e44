/**
 * Command line parsing for guestfb-compositor (node:util parseArgs), kept apart from cli.ts so it
 * can be tested without starting anything.
 */
import { parseArgs } from 'node:util';
import type { OutputConfig } from './core/scene.js';
import type { ModeRequest } from './drm/index.js';
import {
  parseInputSpecs,
  parseIvshmemPeers,
  parseIvshmemSpec,
  parseLimits,
  type DeviceLimits,
  parseSocketAccess,
  parseVhostSpec,
  type InputSpec,
  UsageError as PluginUsageError,
  type SourceSpec,
} from '../../plugin/cli.js';
import type { SocketAccess } from '../../plugin/common/unix-socket.js';

export const USAGE = `Usage: guestfb-compositor [options]

A small Wayland compositor scripted in TypeScript (software rendering; headless or KMS).

Options:
  --headless                 run without a display device (the default without --drm)
  --drm DEVICE               drive a KMS device: /dev/dri/cardN or a driver name (vkms);
                             needs DRM master (root on a VT, or a test device)
  --drm-connector NAME       connector name (Virtual-1) or type (Writeback); default: the
                             first connected one
  --drm-mode WxH[@HZ]        mode on that connector (default: its preferred mode)
  --drm-debug                log the path (direct scanout or composition) of every frame
  --socket NAME              listen on $XDG_RUNTIME_DIR/NAME (default: first free wayland-N)
  --output WxH[@HZ]          add an output (repeatable; default 1920x1080@60)
  --screenshot-dir DIR       write PNG screenshots as DIR/<output>-<sequence>.png
  --screenshot-every MS      screenshot period in milliseconds (with --screenshot-dir;
                             default: one screenshot per output on exit)
  --ivshmem [NAME=]SOCKET    load guestfb as the ivshmem server on SOCKET (repeatable; QEMU:
                             -chardev socket,id=ivsh,path=SOCKET
                             -device ivshmem-doorbell,chardev=ivsh,vectors=1)
  --bar-size SIZE            the ivshmem BAR size, a power of two (default 64M)
  --ivshmem-peers N          ivshmem clients at once (default 1: the one QEMU); each gets the
                             read-write BAR, so more are refused
  --vhost-user-gpu [NAME=]SOCKET[,heads=N][,size=WxH]
                             load guestfb as QEMU's vhost-user GPU back-end on SOCKET
                             (repeatable; QEMU: -chardev socket,id=gpu,path=SOCKET
                             -device vhost-user-gpu-pci,chardev=gpu[,max_outputs=N]);
                             heads=N: N scanouts, one window each (default 1);
                             size=WxH: every head's preferred mode in the guest's display
                             info and EDID (32..8192 each side; default: QEMU's xres/yres,
                             else 1280x800)
  --vhost-user-input [NAME=]SOCKET
                             load guestfb as QEMU's vhost-user input back-end on SOCKET for
                             guest NAME (of its --vhost-user-gpu or --ivshmem; repeatable):
                             the seat's keyboard and pointer on that guest's windows go to it
                             (QEMU: -chardev socket,id=inp,path=SOCKET
                             -device vhost-user-input-pci,chardev=inp)
  --socket-mode OCTAL        permission bits of guestfb's sockets (--ivshmem, --vhost-user-*;
                             default 0600: your user only; connecting needs write permission)
  --socket-group NAME|GID    group of those sockets (default: yours). A path where another
                             process listens is refused ("in use"); a stale socket is replaced.
  --limit NAME=VALUE         per-guest limit of every --vhost-user-gpu (repeatable):
                             maxResources, maxBackingEntries, maxResourceBytes (K/M/G),
                             maxDimension (1..16384), maxTotalSpans, maxTotalBackingBytes
                             (K/M/G), chainsPerSlice, sliceMs, logBurst, logPerSecond
  --input-script FILE        apply scripted input lines from FILE ("-" = stdin, or a FIFO) as
                             they arrive: move X Y | button left|right|middle press|release |
                             key KEY_NAME press|release | type TEXT | wheel N | wait MS |
                             screenshot NAME | wait-window MS TITLE | place X Y TITLE |
                             focus TITLE|none  (see the README: headless guest automation)
  --help                     show this help
`;

export interface CliOptions {
  help: boolean;
  headless: boolean;
  socket: string | undefined;
  outputs: OutputConfig[];
  screenshotDir: string | undefined;
  screenshotEveryMs: number | undefined;
  drm: { device: string; connector?: string; mode?: ModeRequest; debugFrames: boolean } | undefined;
  /** guestfb shared BAR sources (--ivshmem, --bar-size). */
  ivshmem: IvshmemSpec[];
  /** guestfb vhost-user GPU back-ends (--vhost-user-gpu). */
  vhostUserGpu: VhostSpec[];
  /** guestfb vhost-user input back-ends (--vhost-user-input), by guest name. */
  vhostUserInput: InputSpec[];
  /** Scripted input (--input-script): a path, or "-" for stdin. */
  inputScript: string | undefined;
  /** Mode and group of guestfb's sockets (--socket-mode, --socket-group). */
  socketAccess: SocketAccess;
  /** ivshmem clients at once per --ivshmem (--ivshmem-peers; default 1). */
  ivshmemPeers: number | undefined;
  /** Per-guest limits of every --vhost-user-gpu (--limit NAME=VALUE). */
  gpuLimits: DeviceLimits;
}

export type IvshmemSpec = Extract<SourceSpec, { kind: 'ivshmem' }>;
export type VhostSpec = Extract<SourceSpec, { kind: 'vhost-user-gpu' }>;

export class UsageError extends Error {}

/** Parses `WxH` or `WxH@HZ` (HZ may have decimals) into an output config named HEADLESS-n. */
export function parseOutput(spec: string, index: number): OutputConfig {
  const match = /^(\d{1,5})x(\d{1,5})(?:@(\d{1,4}(?:\.\d{1,3})?))?$/.exec(spec);
  if (!match) throw new UsageError(`--output: expected WxH or WxH@HZ, got "${spec}"`);
  const width = Number(match[1]);
  const height = Number(match[2]);
  const hz = match[3] === undefined ? 60 : Number(match[3]);
  if (width < 1 || height < 1 || width > 16384 || height > 16384) {
    throw new UsageError(`--output: ${width}x${height} outside 1..16384`);
  }
  if (hz < 1 || hz > 1000) throw new UsageError(`--output: refresh ${hz} Hz outside 1..1000`);
  return { name: `HEADLESS-${index + 1}`, width, height, refreshMhz: Math.round(hz * 1000) };
}

export function parseCli(argv: string[]): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        headless: { type: 'boolean', default: false },
        socket: { type: 'string' },
        output: { type: 'string', multiple: true },
        'screenshot-dir': { type: 'string' },
        'screenshot-every': { type: 'string' },
        drm: { type: 'string' },
        'drm-connector': { type: 'string' },
        'drm-mode': { type: 'string' },
        'drm-debug': { type: 'boolean', default: false },
        ivshmem: { type: 'string', multiple: true },
        'bar-size': { type: 'string' },
        'ivshmem-peers': { type: 'string' },
        'socket-mode': { type: 'string' },
        'socket-group': { type: 'string' },
        limit: { type: 'string', multiple: true },
        'vhost-user-gpu': { type: 'string', multiple: true },
        'vhost-user-input': { type: 'string', multiple: true },
        'input-script': { type: 'string' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values } = parsed;
  const socket = values.socket;
  if (socket !== undefined && !/^[\w.-]{1,100}$/.test(socket)) {
    throw new UsageError(`--socket: "${socket}" is not a plain socket name`);
  }
  let screenshotEveryMs: number | undefined;
  if (values['screenshot-every'] !== undefined) {
    screenshotEveryMs = Number(values['screenshot-every']);
    if (!Number.isInteger(screenshotEveryMs) || screenshotEveryMs < 1) {
      throw new UsageError('--screenshot-every: expected a positive number of milliseconds');
    }
    if (values['screenshot-dir'] === undefined) {
      throw new UsageError('--screenshot-every needs --screenshot-dir');
    }
  }
  let drm: CliOptions['drm'];
  if (values.drm !== undefined) {
    let mode: ModeRequest | undefined;
    if (values['drm-mode'] !== undefined) {
      const parsed = parseOutput(values['drm-mode'], 0);
      mode = { width: parsed.width, height: parsed.height };
      if (values['drm-mode'].includes('@')) mode.refresh = parsed.refreshMhz / 1000;
    }
    drm = {
      device: values.drm,
      connector: values['drm-connector'],
      mode,
      debugFrames: values['drm-debug'] ?? false,
    };
  } else if (values['drm-connector'] || values['drm-mode'] || values['drm-debug']) {
    throw new UsageError('--drm-connector, --drm-mode and --drm-debug need --drm');
  }
  // With --drm, the KMS output comes first; headless outputs only when asked for.
  const outputs = (values.output ?? (drm ? [] : ['1920x1080'])).map(parseOutput);
  if (values['bar-size'] !== undefined && !values.ivshmem) {
    throw new UsageError('--bar-size needs --ivshmem');
  }
  let ivshmem: IvshmemSpec[];
  let vhostUserGpu: VhostSpec[];
  let vhostUserInput: InputSpec[];
  let socketAccess: SocketAccess;
  let ivshmemPeers: number | undefined;
  let gpuLimits: DeviceLimits;
  try {
    gpuLimits = parseLimits(values.limit ?? []);
    socketAccess = parseSocketAccess(values['socket-mode'], values['socket-group']);
    ivshmemPeers = parseIvshmemPeers(values['ivshmem-peers'], values.ivshmem !== undefined);
    ivshmem = (values.ivshmem ?? []).map(
      (spec, i) => parseIvshmemSpec(spec, i, values['bar-size']) as IvshmemSpec,
    );
    vhostUserGpu = (values['vhost-user-gpu'] ?? []).map(
      (spec, i) => parseVhostSpec(spec, i) as VhostSpec,
    );
    vhostUserInput = parseInputSpecs(values['vhost-user-input'] ?? [], [
      ...ivshmem,
      ...vhostUserGpu,
    ]);
  } catch (error) {
    if (error instanceof PluginUsageError) throw new UsageError(error.message);
    throw error;
  }
  return {
    help: values.help ?? false,
    headless: values.headless ?? false,
    socket,
    outputs,
    screenshotDir: values['screenshot-dir'],
    screenshotEveryMs,
    drm,
    ivshmem,
    vhostUserGpu,
    vhostUserInput,
    inputScript: values['input-script'],
    socketAccess,
    ivshmemPeers,
    gpuLimits,
  };
}
