/**
 * `guestfb`: runs guest displays as an ordinary Wayland client of the compositor named by
 * WAYLAND_DISPLAY (or --display), and `guestfb doctor` explains which path frames will take.
 *
 * Parsing is separate from running (parseCommandLine is pure) so usage errors are testable and
 * never need the native addon. Usage errors exit with status 2.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { linesOf, type LogLimits } from './common/log.js';
import { parseSocketMode, type SocketAccess } from './common/unix-socket.js';
import type { GpuLimits } from './sources/virtio-gpu/gpu-device.js';
import type { QueueBudget } from './vhost-user/scheduler.js';

export class UsageError extends Error {
  readonly exitCode = 2;
}

export type SourceSpec =
  | { kind: 'pattern'; width: number; height: number }
  | {
      kind: 'vhost-user-gpu';
      name: string;
      socket: string;
      heads?: number;
      /** The preferred mode every head reports to the guest (display info and EDID). */
      width?: number;
      height?: number;
    }
  | { kind: 'ivshmem'; name: string; socket: string; barSize: number };

/** A guest's vhost-user-input device (`--vhost-user-input [NAME=]SOCKET`). */
export interface InputSpec {
  name: string;
  socket: string;
}

export interface RunOptions {
  command: 'run';
  sources: SourceSpec[];
  inputs: InputSpec[];
  display: string | undefined;
  /** Pattern flushes per second. */
  rate: number;
  layout: 'scattered' | 'contiguous';
  /** Skip udmabuf even when present (exercise the fallback). */
  noDmabuf: boolean;
  /** Print stats every N seconds (0: only at exit). */
  statsInterval: number;
  /** Stop after N seconds (0: run until a signal). */
  duration: number;
  /** Guest name for pattern windows (vhost sources use their NAME=); default "pattern". */
  guestName: string | undefined;
  /** Take the VMs libvirt's back-end helpers hand over on the control socket. */
  libvirt: boolean;
  /** Mode and group of every socket guestfb listens on for QEMU (--socket-mode/--socket-group). */
  socketAccess: SocketAccess;
  /** ivshmem clients at once per --ivshmem (--ivshmem-peers; default 1). */
  ivshmemPeers: number | undefined;
  /** Per-guest limits of every --vhost-user-gpu (--limit NAME=VALUE). */
  gpuLimits: DeviceLimits;
}

/**
 * What `--limit NAME=VALUE` sets: GPU limits, the queue budget and the log rate of each
 * vhost-user GPU.
 */
export interface DeviceLimits {
  limits: Partial<GpuLimits>;
  budget: Partial<QueueBudget>;
  log: Partial<LogLimits>;
}

/** `--limit` names: where each goes and how its value reads. */
const LIMIT_NAMES = {
  maxResources: 'count',
  maxBackingEntries: 'count',
  maxResourceBytes: 'bytes',
  maxDimension: 'dimension',
  maxTotalSpans: 'count',
  maxTotalBackingBytes: 'bytes',
  chainsPerSlice: 'count',
  sliceMs: 'ms',
  logBurst: 'count',
  logPerSecond: 'count',
} as const;

/** The largest head or resource width and height anywhere in guestfb. */
const MAX_DIMENSION = 16384;

/** Parses repeated `--limit NAME=VALUE` (sizes take K/M/G). Throws UsageError. */
export function parseLimits(specs: readonly string[]): DeviceLimits {
  const out: DeviceLimits = { limits: {}, budget: {}, log: {} };
  for (const spec of specs) {
    const match = /^(\w+)=(.+)$/.exec(spec);
    const name = match?.[1] as keyof typeof LIMIT_NAMES | undefined;
    if (!match || !name || !Object.hasOwn(LIMIT_NAMES, name)) {
      throw new UsageError(
        `--limit: "${spec}" is not NAME=VALUE with NAME one of ${Object.keys(LIMIT_NAMES).join(', ')}`,
      );
    }
    const text = match[2]!;
    const kind = LIMIT_NAMES[name];
    let value: number;
    if (kind === 'ms') {
      value = /^\d{1,4}(\.\d{1,3})?$/.test(text) ? Number(text) : NaN;
      if (!(value >= 0.1 && value <= 1000)) {
        throw new UsageError(`--limit ${name}: "${text}" is not a time of 0.1..1000 ms`);
      }
      out.budget.sliceMs = value;
      continue;
    }
    if (kind === 'dimension') {
      value = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
      if (!(value >= 1 && value <= MAX_DIMENSION)) {
        throw new UsageError(
          `--limit ${name}: "${text}" is not a size of 1..${MAX_DIMENSION} pixels`,
        );
      }
      out.limits.maxDimension = value;
      continue;
    }
    const size = /^(\d{1,15})([kKmMgG]?)$/.exec(text);
    const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 }[(size?.[2] ?? '').toLowerCase()]!;
    value = size && (kind === 'bytes' || size[2] === '') ? Number(size[1]) * unit : NaN;
    if (!(Number.isSafeInteger(value) && value >= 1)) {
      throw new UsageError(
        `--limit ${name}: "${text}" is not a positive ${kind === 'bytes' ? 'size (K, M, G)' : 'integer'}`,
      );
    }
    if (name === 'chainsPerSlice') out.budget.chainsPerSlice = value;
    else if (name === 'logBurst') out.log.burst = value;
    else if (name === 'logPerSecond') out.log.perSecond = value;
    else out.limits[name as keyof GpuLimits] = value;
  }
  return out;
}

export interface DoctorOptions {
  command: 'doctor';
  display: string | undefined;
  json: boolean;
  /** A libvirt domain XML file to check for guestfb's needs. */
  domainXml: string | undefined;
}

export interface InstallLibvirtOptions {
  command: 'install-libvirt';
  scope: 'user' | 'system';
  /** Write the descriptor into this folder instead of the scope's. */
  folder: string | undefined;
}

export type Command =
  | RunOptions
  | DoctorOptions
  | InstallLibvirtOptions
  | { command: 'help'; text: string }
  | { command: 'version' };

/** Sides `size=WxH` may give: the Linux virtio-gpu driver's mode limits (its XRES_MIN/MAX). */
export const SIZE_MIN = 32;
export const SIZE_MAX = 8192;

export const DEFAULT_PATTERN_WIDTH = 1280;
export const DEFAULT_PATTERN_HEIGHT = 720;

export const RUN_HELP = `Usage: guestfb [run] SOURCE... [options]

Shows guest displays in the Wayland compositor named by WAYLAND_DISPLAY, zero-copy through
udmabuf and linux-dmabuf when the host allows, otherwise through wl_shm (logged and counted).

Sources (at least one, repeatable):
  --source pattern[:WxH]        a built-in moving test pattern (default ${DEFAULT_PATTERN_WIDTH}x${DEFAULT_PATTERN_HEIGHT})
  --vhost-user-gpu [NAME=]SOCKET[,heads=N][,size=WxH]
                                act as QEMU's vhost-user-gpu backend on SOCKET (QEMU:
                                -chardev socket,id=gpu,path=SOCKET
                                -device vhost-user-gpu-pci,chardev=gpu[,max_outputs=N]);
                                heads=N: N scanouts, one window each (default 1);
                                size=WxH: every head's preferred mode in the guest's display
                                info and EDID (${SIZE_MIN}..${SIZE_MAX} each side; default:
                                QEMU's xres/yres, else 1280x800)
  --ivshmem [NAME=]SOCKET       act as the ivshmem server on SOCKET and show the framebuffer a
                                guest writes into the shared BAR (QEMU:
                                -chardev socket,id=ivsh,path=SOCKET
                                -device ivshmem-doorbell,chardev=ivsh,vectors=1)
  --bar-size SIZE               the ivshmem BAR size, a power of two (default 64M)
  --ivshmem-peers N             ivshmem clients at once (default 1: the one QEMU); each gets the
                                read-write BAR, so more are refused
  --libvirt                     show every libvirt domain whose video is guestfb's
                                vhost-user GPU: the helper libvirt starts per domain hands
                                its connection to this process over
                                $XDG_RUNTIME_DIR/guestfb/control.sock (sources optional)

Input (repeatable):
  --vhost-user-input [NAME=]SOCKET
                                act as QEMU's vhost-user-input backend on SOCKET for guest NAME
                                (the NAME of its --vhost-user-gpu or --ivshmem; without NAME=
                                the n-th input belongs to the n-th unnamed --vhost-user-gpu):
                                keyboard and pointer on every window of that guest go to it.
                                QEMU: -chardev socket,id=inp,path=SOCKET
                                -device vhost-user-input-pci,chardev=inp

Per-guest limits (every --vhost-user-gpu; repeatable; defaults in the README, "Security model"):
  --limit NAME=VALUE            maxResources, maxBackingEntries, maxResourceBytes (K/M/G),
                                maxDimension (1..16384), maxTotalSpans, maxTotalBackingBytes
                                (K/M/G), chainsPerSlice, sliceMs, logBurst, logPerSecond;
                                e.g. --limit maxResources=256 --limit sliceMs=1

Who may connect (every socket above; whoever connects is the guest's QEMU):
  --socket-mode OCTAL           permission bits of the socket files (default 0600: your user
                                only; connecting needs write permission, e.g. 0660 + a group)
  --socket-group NAME|GID       group of the socket files (default: yours)
  A socket path where another process listens is refused ("in use"); a stale one is replaced.

Options:
  --display NAME                Wayland display (default: $WAYLAND_DISPLAY)
  --name NAME                   the pattern guest's name in window titles (default: pattern)
  --rate HZ                     pattern flushes per second (default 60)
  --layout scattered|contiguous pattern's guest memory layout (default scattered)
  --no-dmabuf                   do not use udmabuf (forces the wl_shm fallback)
  --stats-interval SECONDS      print statistics periodically (default: only at exit)
  --duration SECONDS            exit after this long (default: run until SIGINT/SIGTERM)
  -h, --help                    this text
  --version                     the version

Commands:
  guestfb doctor                which path your host gives you, and how to fix what is missing
  guestfb install-libvirt       install the vhost-user descriptor that lets libvirt find guestfb

SIGINT/SIGTERM print the statistics and exit.`;

export const DOCTOR_HELP = `Usage: guestfb doctor [--display NAME] [--json] [--domain-xml FILE]

Checks what guestfb needs and tells which path frames take (zero-copy dma-buf or wl_shm):
/dev/udmabuf and its limits, the compositor's linux-dmabuf version, formats and modifiers,
sealed memfds, KVM and QEMU. Every missing piece comes with its fix.

Options:
  --display NAME   Wayland display to inspect (default: $WAYLAND_DISPLAY; skipped when unset)
  --json           print the findings as JSON
  --domain-xml FILE  check a libvirt domain's XML (virsh dumpxml NAME > FILE) for shared memfd
                   memory and the vhost-user video device
  -h, --help       this text`;

export const INSTALL_LIBVIRT_HELP = `Usage: guestfb install-libvirt [--user | --system] [--folder DIR]

Installs guestfb's vhost-user GPU descriptor (40-guestfb-gpu.json) so libvirt starts guestfb for
a domain whose video is <video><driver name='vhostuser'/><model type='virtio'/></video>.

  --user           ~/.config/qemu/vhost-user (XDG_CONFIG_HOME): qemu:///session, the default
  --system         /etc/qemu/vhost-user: every libvirt daemon, qemu:///system too (needs root)
  --folder DIR     write into DIR instead
  -h, --help       this text`;

function parseNumber(option: string, text: string, min: number, max: number): number {
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`--${option}: "${text}" is not a number`);
  const value = Number(text);
  if (value < min || value > max) {
    throw new UsageError(`--${option}: ${text} is outside ${min}..${max}`);
  }
  return value;
}

export function parsePatternSpec(spec: string): SourceSpec {
  const match = /^pattern(?::(\d+)x(\d+))?$/.exec(spec);
  if (!match) {
    throw new UsageError(`--source: unknown source "${spec}" (expected pattern or pattern:WxH)`);
  }
  const width = match[1] === undefined ? DEFAULT_PATTERN_WIDTH : Number(match[1]);
  const height = match[2] === undefined ? DEFAULT_PATTERN_HEIGHT : Number(match[2]);
  if (width < 1 || height < 1 || width > 16384 || height > 16384) {
    throw new UsageError(`--source: pattern size ${width}x${height} is outside 1x1..16384x16384`);
  }
  return { kind: 'pattern', width, height };
}

/** Splits `[NAME=]SOCKET`; an unnamed spec gets `defaultName`. */
export function parseNamedSocket(
  option: string,
  spec: string,
  defaultName: string,
): { name: string; socket: string } {
  const equals = spec.indexOf('=');
  // A NAME= prefix has no slash; "a=b/c.sock" names a, "./x=y.sock" is a path.
  const named = equals > 0 && !spec.slice(0, equals).includes('/');
  const name = named ? spec.slice(0, equals) : defaultName;
  const socket = named ? spec.slice(equals + 1) : spec;
  if (socket === '') throw new UsageError(`--${option}: "${spec}" names no socket path`);
  if (!/^[\w.-]+$/.test(name)) {
    throw new UsageError(`--${option}: guest name "${name}" may use letters, digits, . _ -`);
  }
  return { name, socket };
}

/**
 * `[NAME=]SOCKET[,heads=N][,size=WxH]` (options in any order after the socket): N scanouts
 * (1..16, default 1) for a guest whose device line says max_outputs=N, each head a window titled
 * `NAME — NAME-i`; WxH the preferred mode every head reports to the guest.
 */
export function parseVhostSpec(spec: string, index: number): SourceSpec {
  const options = new Map<string, string>();
  let rest = spec;
  for (let m = /,(heads|size)=([^,]*)$/.exec(rest); m; m = /,(heads|size)=([^,]*)$/.exec(rest)) {
    if (options.has(m[1]!)) throw new UsageError(`--vhost-user-gpu: ${m[1]}= given twice`);
    options.set(m[1]!, m[2]!);
    rest = rest.slice(0, m.index);
  }
  const named = parseNamedSocket('vhost-user-gpu', rest, `vm${index}`);
  const result: Extract<SourceSpec, { kind: 'vhost-user-gpu' }> = {
    kind: 'vhost-user-gpu',
    ...named,
  };
  const heads = options.get('heads');
  if (heads !== undefined) {
    const count = Number(heads);
    if (!/^\d{1,2}$/.test(heads) || count < 1 || count > 16) {
      throw new UsageError(`--vhost-user-gpu: heads=${heads} outside 1..16`);
    }
    result.heads = count;
  }
  const size = options.get('size');
  if (size !== undefined) {
    const m = /^(\d{1,5})x(\d{1,5})$/.exec(size);
    const [width, height] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
    const inRange = (v: number) => v >= SIZE_MIN && v <= SIZE_MAX;
    if (!inRange(width) || !inRange(height)) {
      throw new UsageError(
        `--vhost-user-gpu: size=${size} is not WxH with each side ${SIZE_MIN}..${SIZE_MAX}`,
      );
    }
    result.width = width;
    result.height = height;
  }
  return result;
}

/**
 * Parses every `--vhost-user-input`: each must name a guest that has a display source, and a
 * guest has at most one input device.
 */
export function parseInputSpecs(
  specs: readonly string[],
  sources: readonly SourceSpec[],
): InputSpec[] {
  const guests = new Set(sources.flatMap((s) => (s.kind === 'pattern' ? [] : [s.name])));
  const inputs = specs.map((spec, i) => parseNamedSocket('vhost-user-input', spec, `vm${i}`));
  const seen = new Set<string>();
  for (const input of inputs) {
    if (!guests.has(input.name)) {
      throw new UsageError(
        `--vhost-user-input: no guest "${input.name}" (guests: ${[...guests].join(', ') || 'none'}); ` +
          'use the NAME of a --vhost-user-gpu or --ivshmem',
      );
    }
    if (seen.has(input.name)) {
      throw new UsageError(`--vhost-user-input: guest "${input.name}" has two input devices`);
    }
    seen.add(input.name);
  }
  return inputs;
}

/** 64 MiB: QEMU maps it as BAR2; a 4K XRGB framebuffer (33 MB) fits. */
export const DEFAULT_BAR_SIZE = 64 * 1024 * 1024;

export function parseIvshmemSpec(spec: string, index: number, barSize?: string): SourceSpec {
  const equals = spec.indexOf('=');
  const named = equals > 0 && !spec.slice(0, equals).includes('/');
  const name = named ? spec.slice(0, equals) : `bar${index}`;
  const socket = named ? spec.slice(equals + 1) : spec;
  if (socket === '') throw new UsageError(`--ivshmem: "${spec}" names no socket path`);
  if (!/^[\w.-]+$/.test(name)) {
    throw new UsageError(`--ivshmem: guest name "${name}" may use letters, digits, . _ -`);
  }
  let size = DEFAULT_BAR_SIZE;
  if (barSize !== undefined) {
    const match = /^(\d{1,12})([kKmMgG]?)$/.exec(barSize);
    const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 }[(match?.[2] ?? '').toLowerCase()]!;
    size = match ? Number(match[1]) * unit : NaN;
    if (!(size >= 8192 && size <= 2 ** 34) || !Number.isInteger(Math.log2(size))) {
      throw new UsageError(`--bar-size: "${barSize}" is not a power of two from 8K to 16G`);
    }
  }
  return { kind: 'ivshmem', name, socket, barSize: size };
}

/** The `--socket-mode`/`--socket-group` values as a SocketAccess. Throws UsageError. */
export function parseSocketAccess(
  mode: string | undefined,
  group: string | undefined,
): SocketAccess {
  const access: SocketAccess = {};
  if (mode !== undefined) {
    access.mode = parseSocketMode(mode);
    if (Number.isNaN(access.mode)) {
      throw new UsageError(`--socket-mode: "${mode}" is not an octal mode 0..0777 (e.g. 0660)`);
    }
  }
  if (group !== undefined) {
    if (/^\d{1,10}$/.test(group)) {
      const gid = Number(group);
      if (gid > 0xfffffffe) throw new UsageError(`--socket-group: gid ${group} is out of range`);
      access.group = gid;
    } else if (/^[A-Za-z_][\w.-]{0,31}\$?$/.test(group)) {
      access.group = group;
    } else {
      throw new UsageError(`--socket-group: "${group}" is neither a group name nor a gid`);
    }
  }
  return access;
}

/** `--ivshmem-peers N`: 1..64 (undefined when not given). Throws UsageError. */
export function parseIvshmemPeers(
  text: string | undefined,
  hasIvshmem: boolean,
): number | undefined {
  if (text === undefined) return undefined;
  if (!hasIvshmem) throw new UsageError('--ivshmem-peers needs --ivshmem');
  if (!/^\d{1,2}$/.test(text) || Number(text) < 1 || Number(text) > 64) {
    throw new UsageError(`--ivshmem-peers: "${text}" is not a number of peers 1..64`);
  }
  return Number(text);
}

/** parseArgs, strict and without positionals; its complaints become UsageErrors (`what: ...`). */
function parseOptions<const Options extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: Options,
  what?: string,
) {
  try {
    return parseArgs({ args, strict: true, allowPositionals: false, options });
  } catch (error) {
    const message = (error as Error).message;
    throw new UsageError(what ? `${what}: ${message}` : message);
  }
}

/** Parses argv (without node and script). Throws UsageError on any mistake. */
export function parseCommandLine(argv: readonly string[]): Command {
  const args = [...argv];
  if (args[0] === 'doctor') return parseDoctor(args.slice(1));
  if (args[0] === 'install-libvirt') return parseInstallLibvirt(args.slice(1));
  if (args[0] === 'run') args.shift();
  const parsed = parseOptions(args, {
    source: { type: 'string', multiple: true },
    'vhost-user-gpu': { type: 'string', multiple: true },
    'vhost-user-input': { type: 'string', multiple: true },
    ivshmem: { type: 'string', multiple: true },
    'bar-size': { type: 'string' },
    'ivshmem-peers': { type: 'string' },
    'socket-mode': { type: 'string' },
    'socket-group': { type: 'string' },
    limit: { type: 'string', multiple: true },
    display: { type: 'string' },
    name: { type: 'string' },
    rate: { type: 'string' },
    layout: { type: 'string' },
    'no-dmabuf': { type: 'boolean' },
    'stats-interval': { type: 'string' },
    duration: { type: 'string' },
    libvirt: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  });
  const values = parsed.values;
  if (values.help) return { command: 'help', text: RUN_HELP };
  if (values.version) return { command: 'version' };
  const sources: SourceSpec[] = [
    ...(values.source ?? []).map(parsePatternSpec),
    ...(values['vhost-user-gpu'] ?? []).map((spec, i) => parseVhostSpec(spec, i)),
    ...(values.ivshmem ?? []).map((spec, i) => parseIvshmemSpec(spec, i, values['bar-size'])),
  ];
  const inputs = parseInputSpecs(values['vhost-user-input'] ?? [], sources);
  if (values['bar-size'] !== undefined && !values.ivshmem) {
    throw new UsageError('--bar-size needs --ivshmem');
  }
  if (sources.length === 0 && !values.libvirt) {
    throw new UsageError(
      'no source given: use --source pattern[:WxH], --vhost-user-gpu SOCKET, --ivshmem SOCKET ' +
        'or --libvirt',
    );
  }
  const layout = values.layout ?? 'scattered';
  if (layout !== 'scattered' && layout !== 'contiguous') {
    throw new UsageError(`--layout: "${layout}" is neither scattered nor contiguous`);
  }
  const guestName = values.name;
  if (guestName !== undefined && (guestName.length === 0 || guestName.length > 200)) {
    throw new UsageError('--name: must be 1..200 characters');
  }
  return {
    command: 'run',
    sources,
    inputs,
    display: values.display,
    rate: values.rate === undefined ? 60 : parseNumber('rate', values.rate, 0.1, 1000),
    layout,
    noDmabuf: values['no-dmabuf'] ?? false,
    statsInterval:
      values['stats-interval'] === undefined
        ? 0
        : parseNumber('stats-interval', values['stats-interval'], 0, 86400),
    duration:
      values.duration === undefined ? 0 : parseNumber('duration', values.duration, 0, 31536000),
    guestName,
    libvirt: values.libvirt ?? false,
    socketAccess: parseSocketAccess(values['socket-mode'], values['socket-group']),
    ivshmemPeers: parseIvshmemPeers(values['ivshmem-peers'], values.ivshmem !== undefined),
    gpuLimits: parseLimits(values.limit ?? []),
  };
}

function parseDoctor(args: string[]): Command {
  const parsed = parseOptions(
    args,
    {
      display: { type: 'string' },
      json: { type: 'boolean' },
      'domain-xml': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'doctor',
  );
  if (parsed.values.help) return { command: 'help', text: DOCTOR_HELP };
  return {
    command: 'doctor',
    display: parsed.values.display,
    json: parsed.values.json ?? false,
    domainXml: parsed.values['domain-xml'],
  };
}

function parseInstallLibvirt(args: string[]): Command {
  const parsed = parseOptions(
    args,
    {
      user: { type: 'boolean' },
      system: { type: 'boolean' },
      folder: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'install-libvirt',
  );
  const values = parsed.values;
  if (values.help) return { command: 'help', text: INSTALL_LIBVIRT_HELP };
  if (values.user && values.system) {
    throw new UsageError('install-libvirt: --user and --system exclude each other');
  }
  if (values.folder === '') throw new UsageError('install-libvirt: --folder needs a folder');
  return {
    command: 'install-libvirt',
    scope: values.system ? 'system' : 'user',
    folder: values.folder,
  };
}

/** Entry point used by bin/guestfb.js. Resolves to the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`guestfb: ${error.message}\nTry 'guestfb --help'.\n`);
      return error.exitCode;
    }
    throw error;
  }
  switch (command.command) {
    case 'help':
      process.stdout.write(`${command.text}\n`);
      return 0;
    case 'version':
      process.stdout.write(`guestfb ${await packageVersion()}\n`);
      return 0;
    case 'doctor': {
      const { runDoctor } = await import('./doctor.js');
      return runDoctor(command);
    }
    case 'install-libvirt':
      return installLibvirt(command);
    case 'run':
      return runCli(command);
  }
}

async function installLibvirt(options: InstallLibvirtOptions): Promise<number> {
  const { gpuDescriptor, gpuProgramPath, installDescriptor, installFolder } =
    await import('./backend-program/descriptor.js');
  const folder = options.folder ?? installFolder(options.scope);
  let file;
  try {
    file = installDescriptor(folder, gpuDescriptor(gpuProgramPath()));
  } catch (error) {
    process.stderr.write(`guestfb: install-libvirt: ${(error as Error).message}\n`);
    return 1;
  }
  process.stdout.write(
    `installed ${file}\n` +
      (options.scope === 'user' && !options.folder
        ? 'libvirt session daemons (qemu:///session) now find guestfb; the system daemon reads ' +
          'only /usr/share/qemu/vhost-user and /etc/qemu/vhost-user (use --system for it)\n'
        : ''),
  );
  return 0;
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const text = await readFile(new URL(relative, import.meta.url), 'utf8');
      return (JSON.parse(text) as { version: string }).version;
    } catch {
      // try the next location (source tree vs dist/)
    }
  }
  return 'unknown';
}

/** Runs the sources against the compositor until a signal or --duration; prints stats. */
async function runCli(options: RunOptions): Promise<number> {
  const { runStandalone, formatStats } = await import('./index.js');
  const { createPatternSource } = await import('./sources/pattern.js');
  type Source = import('./sources/types.js').FramebufferSource;
  const log = (message: string) => process.stderr.write(`guestfb: ${message}\n`);
  const sources: { name: string; source: Source; start?: () => void }[] = [];
  const inputs: { name: string; sink: import('./virtio-input/index.js').VhostUserInputBackend }[] =
    [];
  const closeSources = () => {
    for (const { source } of sources.splice(0)) source.close();
    for (const { sink } of inputs.splice(0)) sink.close();
  };
  try {
    for (const spec of options.sources) {
      if (spec.kind === 'pattern') {
        const pattern = createPatternSource({
          width: spec.width,
          height: spec.height,
          rate: options.rate,
          layout: options.layout,
        });
        sources.push({
          name: options.guestName ?? 'pattern',
          source: pattern,
          start: () => pattern.start(),
        });
      } else if (spec.kind === 'ivshmem') {
        const { createSharedBarSource } = await import('./sources/shared-bar/index.js');
        let source;
        try {
          source = createSharedBarSource({
            ivshmemSocket: spec.socket,
            barSize: spec.barSize,
            name: spec.name,
            socketAccess: options.socketAccess,
            maxPeers: options.ivshmemPeers,
            log: linesOf(log, `${spec.name}: `, { showLevel: false }),
          });
        } catch (error) {
          throw new Error(`--ivshmem ${spec.socket}: ${(error as Error).message}`);
        }
        log(
          `${spec.name}: ivshmem server on ${spec.socket} (QEMU: -chardev socket,id=ivsh,path=${spec.socket} ` +
            '-device ivshmem-doorbell,chardev=ivsh,vectors=1)',
        );
        sources.push({ name: spec.name, source });
      } else {
        let source;
        try {
          source = await openVhostSource(spec, options.socketAccess, options.gpuLimits, log);
        } catch (error) {
          throw new Error(`--vhost-user-gpu ${spec.socket}: ${(error as Error).message}`);
        }
        sources.push({ name: spec.name, source });
      }
    }
    for (const spec of options.inputs) {
      const { createVhostUserInputBackend } = await import('./virtio-input/index.js');
      try {
        const sink = createVhostUserInputBackend({
          socketPath: spec.socket,
          role: 'listen',
          socketAccess: options.socketAccess,
          guestName: spec.name,
          log: linesOf(log, `${spec.name} input: `),
        });
        inputs.push({ name: spec.name, sink });
      } catch (error) {
        throw new Error(`--vhost-user-input ${spec.socket}: ${(error as Error).message}`);
      }
      log(
        `${spec.name}: vhost-user-input back-end listening on ${spec.socket} ` +
          `(QEMU: -chardev socket,id=inp,path=${spec.socket} -device vhost-user-input-pci,chardev=inp)`,
      );
    }
  } catch (error) {
    closeSources();
    process.stderr.write(`guestfb: ${(error as Error).message}\n`);
    return 1;
  }
  if (!options.display && !process.env.WAYLAND_DISPLAY) {
    closeSources();
    process.stderr.write('guestfb: WAYLAND_DISPLAY is not set and no --display given\n');
    return 1;
  }
  let plugin;
  try {
    plugin = await runStandalone({
      display: options.display,
      sources: sources.map(({ name, source }) => ({ name, source })),
      inputs: inputs.map(({ name, sink }) => ({ name, sink })),
      udmabuf: options.noDmabuf ? false : undefined,
      log,
    });
  } catch (error) {
    closeSources();
    const display = options.display ?? process.env.WAYLAND_DISPLAY;
    process.stderr.write(`guestfb: compositor "${display}": ${(error as Error).message}\n`);
    return 1;
  }
  for (const entry of sources) entry.start?.();
  const running = plugin;
  let domains: import('./backend-program/domains.js').LibvirtDomains | null = null;
  if (options.libvirt) {
    const { LibvirtDomains } = await import('./backend-program/domains.js');
    try {
      domains = new LibvirtDomains(running, log);
    } catch (error) {
      running.stop();
      closeSources();
      process.stderr.write(`guestfb: --libvirt: ${(error as Error).message}\n`);
      return 1;
    }
    log(`accepting libvirt domains on ${domains.path}`);
  }
  const inputSinks = [...inputs];
  return new Promise<number>((resolve) => {
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (status: number, why: string) => {
      for (const timer of timers) clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      domains?.close();
      running.stop();
      closeSources();
      log(`stopping (${why})`);
      process.stdout.write(`${formatStats(running.stats())}\n`);
      for (const { name, sink } of inputSinks) {
        process.stdout.write(`${name} input: ${JSON.stringify(sink.stats())}\n`);
      }
      resolve(status);
    };
    const onSignal = (signal: NodeJS.Signals) => finish(0, signal);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    running.client?.onError(() => finish(1, 'compositor connection failed'));
    if (options.statsInterval > 0) {
      const interval = setInterval(
        () => process.stdout.write(`${formatStats(running.stats())}\n\n`),
        options.statsInterval * 1000,
      );
      timers.push(interval);
    }
    if (options.duration > 0) {
      timers.push(
        setTimeout(() => finish(0, `--duration ${options.duration}`), options.duration * 1000),
      );
    }
  });
}

async function openVhostSource(
  spec: Extract<SourceSpec, { kind: 'vhost-user-gpu' }>,
  socketAccess: SocketAccess,
  gpuLimits: DeviceLimits,
  log: (message: string) => void,
): Promise<import('./sources/types.js').FramebufferSource> {
  const { createVhostUserGpuBackend } = await import('./sources/virtio-gpu/index.js');
  const backend = createVhostUserGpuBackend({
    socketPath: spec.socket,
    role: 'listen',
    name: spec.name,
    scanouts: spec.heads,
    width: spec.width,
    height: spec.height,
    socketAccess,
    limits: gpuLimits.limits,
    budget: gpuLimits.budget,
    logLimits: gpuLimits.log,
    log: linesOf(log, `${spec.name}: `),
  });
  log(
    `${spec.name}: vhost-user-gpu back-end listening on ${spec.socket} ` +
      `(QEMU: -chardev socket,id=gpu,path=${spec.socket} -device vhost-user-gpu-pci,chardev=gpu)`,
  );
  return backend;
}
