// The QEMU tier: QEMU 10 from bookworm-backports (unpacked into the cache, never installed) and a
// launcher that boots the test guest (guest-image.ts) with a virtio-gpu device: either
// `vhost-user-gpu-pci` talking to a backend on a UNIX socket (guestfb's, or QEMU's own
// vhost-user-gpu for comparison) or QEMU's built-in `virtio-gpu-pci`.
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  cacheDir,
  downloadAndUnpack,
  ensureBackportsIndex,
  readManifest,
  removeOtherTrees,
  withCacheLock,
  writeManifest,
  type ResolvedPackage,
} from './debian-fetch.js';

export { ensureGuest, type GuestImage } from './guest-image.js';
import type { GuestImage } from './guest-image.js';
import { missingLibraries as missingSharedLibraries } from './ldd.js';

const execFileAsync = promisify(execFile);

export interface QemuTier {
  /** qemu-system-x86_64 from backports. */
  qemuBinary: string;
  /** Firmware/data folders, each passed as -L: QEMU's data, then backports seabios. */
  dataDirs: string[];
  /** QEMU_MODULE_DIR: the device and UI modules (hw-display-virtio-gpu*.so, ...). */
  moduleDir: string;
  /** LD_LIBRARY_PATH entries for the unpacked tree (colon separated). */
  libraryPath: string;
  /** QEMU's own vhost-user-gpu backend (from qemu-system-gui), for comparison runs. */
  vhostUserGpuBinary: string;
  /** Debian version of qemu-system-x86, e.g. 1:10.0.2+ds-2+deb13u1~bpo12+1. */
  version: string;
  /** First line of `qemu-system-x86_64 --version`. */
  versionString: string;
}

/** Backports packages unpacked into one tree. */
export const qemuPackages = [
  'qemu-system-x86',
  'qemu-system-common',
  'qemu-system-data',
  'qemu-system-modules-opengl',
  'qemu-system-gui',
  'seabios',
];

interface QemuManifest {
  packages: { name: string; version: string }[];
  root: string;
  versionString: string;
}

function tierFromRoot(root: string, manifest: QemuManifest): QemuTier {
  const libDir = path.join(root, 'usr', 'lib');
  const triplet = existsSync(libDir)
    ? readdirSync(libDir).find(
        (d) => existsSync(path.join(libDir, d, 'qemu')) && d.includes('-linux-'),
      )
    : undefined;
  const archLib = path.join(libDir, triplet ?? 'x86_64-linux-gnu');
  return {
    qemuBinary: path.join(root, 'usr', 'bin', 'qemu-system-x86_64'),
    dataDirs: [path.join(root, 'usr', 'share', 'qemu'), path.join(root, 'usr', 'share', 'seabios')],
    moduleDir: path.join(archLib, 'qemu'),
    libraryPath: archLib,
    vhostUserGpuBinary: path.join(root, 'usr', 'lib', 'qemu', 'vhost-user-gpu'),
    version: manifest.packages.find((p) => p.name === 'qemu-system-x86')?.version ?? '',
    versionString: manifest.versionString,
  };
}

/** Environment for running the tier's binaries. */
export function qemuEnv(tier: QemuTier, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const libraryPath = [tier.libraryPath, base.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return { ...base, QEMU_MODULE_DIR: tier.moduleDir, LD_LIBRARY_PATH: libraryPath };
}

/**
 * Lists the shared libraries the binaries and GPU modules need but the system does not have,
 * as `file: library` strings (empty when everything resolves).
 */
export async function missingLibraries(tier: QemuTier): Promise<string[]> {
  const files = [tier.qemuBinary, tier.vhostUserGpuBinary];
  for (const name of readdirSync(tier.moduleDir).sort()) {
    if (/^(hw-display-virtio-|ui-opengl|ui-egl-headless)/.test(name)) {
      files.push(path.join(tier.moduleDir, name));
    }
  }
  return missingSharedLibraries(files, qemuEnv(tier));
}

/**
 * Makes sure QEMU 10 (bookworm-backports) is unpacked in `${XDG_CACHE_HOME:-~/.cache}/guestfb/qemu`
 * and that its libraries resolve. The first run updates a private apt index and downloads about
 * 14 MB; later runs read the manifest and touch no network.
 */
export async function ensureQemu(progress?: (msg: string) => void): Promise<QemuTier> {
  const dir = cacheDir('qemu');
  const manifestFile = path.join(dir, 'manifest.json');
  const tier = await withCacheLock(dir, async () => {
    const manifest = readManifest<QemuManifest>(
      manifestFile,
      (m) =>
        qemuPackages.every((name) => m.packages.some((p) => p.name === name)) &&
        existsSync(path.join(dir, m.root, 'usr', 'bin', 'qemu-system-x86_64')),
    );
    if (manifest) return tierFromRoot(path.join(dir, manifest.root), manifest);

    const index = await ensureBackportsIndex(path.join(dir, 'apt'), progress);
    const resolved: ResolvedPackage[] = [];
    for (const name of qemuPackages) resolved.push(await index.resolve(name));
    const rootName = await downloadAndUnpack(index, resolved, dir, progress);
    const root = path.join(dir, rootName);
    const partial: QemuManifest = {
      packages: resolved.map((p) => ({ name: p.name, version: p.version })),
      root: rootName,
      versionString: '',
    };
    const { stdout } = await execFileAsync(tierFromRoot(root, partial).qemuBinary, ['--version'], {
      env: qemuEnv(tierFromRoot(root, partial)),
    }).catch((e: { stderr?: string; message: string }) => {
      throw new Error(
        `qemu: the unpacked qemu-system-x86_64 does not run: ${e.stderr || e.message}`,
      );
    });
    const finished = { ...partial, versionString: stdout.split('\n')[0]!.trim() };
    writeManifest(manifestFile, finished);
    await removeOtherTrees(dir, 'root-', rootName);
    progress?.(`QEMU ready: ${finished.versionString}`);
    return tierFromRoot(root, finished);
  });
  const missing = await missingLibraries(tier);
  if (missing.length) {
    throw new Error(
      `qemu: shared libraries missing for QEMU 10 (run \`npm run setup\`, which installs them):\n  ${missing.join('\n  ')}`,
    );
  }
  return tier;
}

export interface BootOptions {
  /** Socket a vhost-user GPU backend LISTENS on; QEMU connects (chardev id "vgpu"). */
  gpuSocket?: string;
  /**
   * The GPU device's driver and options, without xres/yres/max_outputs (added from the options
   * below). Default: `vhost-user-gpu-pci,chardev=vgpu` with gpuSocket, else QEMU's built-in
   * `virtio-gpu-pci`. `none` boots without a GPU.
   */
  gpuDevice?: string;
  /** max_outputs (default 1). */
  scanouts?: number;
  /** Preferred mode the device reports to the guest (default 1280x800). */
  width?: number;
  height?: number;
  /** ivshmem-doorbell server socket (guestfb is the server); chardev id "ivsh", one vector. */
  ivshmemSocket?: string;
  /** Shell command the guest's /init runs (default: the demo, see examples/guest/init.sh). */
  guestCommand?: string;
  /** Keep the kernel's fbcon on the GPU (default true); false passes fbdev_emulation=0. */
  fbcon?: boolean;
  /** QMP server socket QEMU listens on (for screendump and other queries). */
  qmpSocket?: string;
  /**
   * Make the guest drive every scanout even when the device reports only the first one enabled
   * (QEMU without a UI enables head 0 only, for its built-in GPU and its own vhost-user backend):
   * adds `video=Virtual-N:e` for scanouts 2.. to the kernel command line. Their modes come from
   * QEMU's default EDID (up to 5120x2160, preferred not 1280x800): pick one with drawpattern
   * --mode. Default false.
   */
  forceScanouts?: boolean;
  /**
   * pvh (default): boot the uncompressed ELF kernel through its PVH entry (no decompression in
   * the guest); bzimage: the Debian bzImage through the firmware's Linux loader.
   */
  kernelBoot?: 'pvh' | 'bzimage';
  /**
   * quiet (default): the kernel prints warnings and errors only, so the serial console (a
   * port write per byte, slow under TCG and very slow nested) carries /init's lines; full: the
   * whole boot log (also on fbcon).
   */
  kernelLog?: 'quiet' | 'full';
  /**
   * Boot only what the test guest uses (default false): qboot instead of SeaBIOS, a machine
   * without the PS/2 controller, vmport and the PCI/memory hotplug AML (a smaller DSDT to
   * interpret), and a kernel command line that skips initcalls the guest never needs (kprobe and
   * block tracers, tracefs, crypto self-tests, IPv6, 31 spare UARTs, ACPI PNP and processor
   * drivers, slab sysfs, the read-only remap and its W+X walk, the IO-APIC timer check). Worth it where every instruction runs under TCG inside TCG (figures in the
   * README, "Test tiers").
   */
  fastBoot?: boolean;
  /** Extra kernel command line words. */
  kernelArgs?: string[];
  /** Extra QEMU arguments, appended last. */
  extraArgs?: string[];
  /** Guest RAM (default 512). */
  memoryMb?: number;
  /**
   * auto (default): KVM when probeKvm() found it working for this tier in this process, else TCG
   * (KVM exists on the project's machines but fails when a vCPU starts).
   */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Kill QEMU (SIGKILL) after this long. */
  timeoutMs?: number;
  onConsole?: (line: string) => void;
}

export interface QemuProcess {
  pid: number;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** Everything the guest printed on its serial console so far. */
  console: () => string;
  /** QEMU's own stderr so far. */
  stderr: () => string;
  /** The full command line (for logs and reports). */
  argv: string[];
  /** Resolves with the first console match of `pattern` (also when already printed); rejects if QEMU exits first. */
  waitForConsole(pattern: RegExp): Promise<RegExpMatchArray>;
  /** The guest command's exit status once /init printed it, else null. */
  guestStatus(): number | null;
}

/**
 * Initcalls of Debian's generic kernel that the test guest never uses and that cost the most
 * under nested TCG (measured with initcall_debug): tracers, crypto self-tests and key loading,
 * swap compression, Intel platform drivers, the RTC, TCP congestion modules.
 */
const fastBootSkippedInitcalls = [
  'init_kprobe_trace',
  'init_blk_tracer',
  'trace_eval_init',
  'crypto_kdf108_init',
  'load_system_certificate_list',
  'init_encrypted',
  'init_zswap',
  'iosf_mbi_init',
  'p2sb_fs_init',
  'bpf_rstat_kfunc_init',
  'i8042_init',
  'cmos_init',
  'cubictcp_register',
  'tcp_congestion_default',
  'acpi_processor_driver_init',
  // The second round (initcall_debug in a nested boot, guest seconds): tracefs 4.9, slab sysfs
  // 1.2, BPF key kfuncs 1.4, and the small drivers and sysfs files nothing in the guest opens
  // (/dev/hpet, msr, pcspkr, AGP, IMA, EVM keys). IPv4 (3.2) stays: without it the loopback
  // device's inetdev_init dereferences NULL.
  'tracer_init_tracefs',
  'bpf_key_sig_kfuncs_init',
  'slab_sysfs_init',
  'hpet_init',
  'digsig_init',
  'ia32_binfmt_init',
  'msr_init',
  'add_pcspkr',
  'agp_intel_init',
  'init_ima',
  'init_ladder',
  'dev_map_init',
];
export const fastBootKernelArgs = [
  'cryptomgr.notests',
  '8250.nr_uarts=1',
  'ipv6.disable=1',
  'pnpacpi=off',
  'rodata=off',
  // The IO-APIC timer check waits for ticks that TCG inside TCG delivers late (2.4 s nested).
  'no_timer_check',
  `initcall_blacklist=${fastBootSkippedInitcalls.join(',')}`,
];
const fastBootGlobals = [
  'PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off',
  'PIIX4_PM.acpi-root-pci-hotplug=off',
  'PIIX4_PM.memory-hotplug-support=off',
];

/** QOM id given to the GPU device (unless gpuDevice sets one): QMP screendump's `device`. */
export const gpuDeviceId = 'gpu0';

/** The QEMU arguments bootGuest uses (exported for tests and the CLI's --print). */
export function qemuArgs(tier: QemuTier, guest: GuestImage, options: BootOptions): string[] {
  const memory = options.memoryMb ?? 512;
  const scanouts = options.scanouts ?? 1;
  const width = options.width ?? 1280;
  const height = options.height ?? 800;
  const accel =
    options.accel === 'kvm' || (options.accel !== 'tcg' && kvmVerdicts.get(tier.qemuBinary)?.usable)
      ? 'kvm'
      : 'tcg';
  const kernelArgs = [
    'console=tty0',
    'console=ttyS0',
    'panic=-1',
    `guestfb.mode=${width}x${height}`,
    // A throwaway test guest: no speculation workarounds (each costs TCG time on every
    // syscall and context switch).
    'mitigations=off',
  ];
  if ((options.kernelLog ?? 'quiet') === 'quiet') kernelArgs.push('quiet');
  if (options.fbcon === false) kernelArgs.push('drm_kms_helper.fbdev_emulation=0');
  if (options.guestCommand !== undefined) {
    kernelArgs.push(`guestfb.cmd=${Buffer.from(options.guestCommand).toString('base64')}`);
  }
  if (options.fastBoot) kernelArgs.push(...fastBootKernelArgs);
  if (options.forceScanouts) {
    for (let i = 2; i <= scanouts; i++) kernelArgs.push(`video=Virtual-${i}:e`);
  }
  kernelArgs.push(...(options.kernelArgs ?? []));
  const append = kernelArgs.join(' ');
  if (append.length > 2000) throw new Error('qemu: kernel command line too long (limit 2048)');

  const args = [
    ...tier.dataDirs.flatMap((d) => ['-L', d]),
    '-accel',
    accel,
    '-cpu',
    // TCG's max has every feature it emulates; under KVM, the host CPU's.
    accel === 'kvm' ? 'host' : 'max',
    '-smp',
    '1',
    '-m',
    `${memory}M`,
    // vhost-user backends map guest RAM: it must be a shareable memfd.
    '-object',
    `memory-backend-memfd,id=mem,size=${memory}M,share=on`,
    '-machine',
    options.fastBoot ? 'pc,memory-backend=mem,i8042=off,vmport=off' : 'pc,memory-backend=mem',
    '-nodefaults',
    '-no-user-config',
    '-vga',
    'none',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-kernel',
    (options.kernelBoot ?? 'pvh') === 'pvh' ? guest.pvhKernel : guest.kernel,
    '-initrd',
    guest.initrd,
    '-append',
    append,
  ];
  const device =
    options.gpuDevice ?? (options.gpuSocket ? 'vhost-user-gpu-pci,chardev=vgpu' : 'virtio-gpu-pci');
  if (options.gpuSocket) args.push('-chardev', `socket,id=vgpu,path=${options.gpuSocket}`);
  if (device !== 'none') {
    const id = /(^|,)id=/.test(device) ? '' : `,id=${gpuDeviceId}`;
    args.push('-device', `${device}${id},xres=${width},yres=${height},max_outputs=${scanouts}`);
  }
  if (options.ivshmemSocket) {
    args.push(
      '-chardev',
      `socket,id=ivsh,path=${options.ivshmemSocket}`,
      '-device',
      'ivshmem-doorbell,chardev=ivsh,vectors=1',
    );
  }
  if (options.fastBoot) {
    for (const property of fastBootGlobals) args.push('-global', property);
    // qboot (shipped with QEMU) instead of SeaBIOS: it sets up PCI and the ACPI tables and
    // jumps to the kernel, without SeaBIOS's device scans and option ROMs.
    args.push('-bios', 'qboot.rom');
  }
  if (options.qmpSocket) args.push('-qmp', `unix:${options.qmpSocket},server=on,wait=off`);
  args.push(...(options.extraArgs ?? []));
  return args;
}

/**
 * Wraps a command so the kernel kills it when this process dies (util-linux setpriv sets the
 * parent-death signal, then execs it): a crashed test must not leave QEMU running.
 */
function dieWithParent(command: string, args: string[]): [string, string[]] {
  const setpriv = '/usr/bin/setpriv';
  if (!existsSync(setpriv)) return [command, args];
  return [setpriv, ['--pdeathsig', 'SIGKILL', '--', command, ...args]];
}

/** Starts QEMU with the guest; see BootOptions. */
export function bootGuest(tier: QemuTier, guest: GuestImage, options: BootOptions): QemuProcess {
  const args = qemuArgs(tier, guest, options);
  const child = spawn(...dieWithParent(tier.qemuBinary, args), {
    env: qemuEnv(tier),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let consoleText = '';
  let stderrText = '';
  let partial = '';
  let status: number | null = null;
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    consoleText += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '');
      const exit = /^GUESTFB-EXIT (\d+)$/.exec(line);
      if (exit) status = Number(exit[1]);
      options.onConsole?.(line);
    }
    for (const wake of [...waiters]) wake();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderrText += chunk;
  });
  let timer: NodeJS.Timeout | undefined;
  if (options.timeoutMs) {
    timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    timer.unref();
  }
  let hasExited = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.on('error', (error) => {
      hasExited = true;
      reject(error);
    });
    child.on('close', (code, signal) => {
      hasExited = true;
      if (timer) clearTimeout(timer);
      for (const wake of [...waiters]) wake();
      resolve({ code, signal });
    });
  });
  // Callers that only use waitForConsole must not see an unhandled rejection from a spawn error.
  exited.catch(() => {});
  return {
    pid: child.pid ?? -1,
    argv: [tier.qemuBinary, ...args],
    kill: (signal = 'SIGTERM') => {
      if (!hasExited) child.kill(signal);
    },
    exited,
    console: () => consoleText,
    stderr: () => stderrText,
    guestStatus: () => status,
    waitForConsole(pattern: RegExp) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const match = consoleText.match(pattern);
          if (match) {
            waiters.delete(check);
            resolve(match);
          } else if (hasExited) {
            waiters.delete(check);
            reject(
              new Error(
                `qemu exited before the console showed ${pattern}\n--- console tail:\n${consoleText.slice(-3000)}\n--- qemu stderr:\n${stderrText.slice(-2000)}`,
              ),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

export interface BackendProcess {
  pid: number;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** Resolves once the backend listens on its socket; rejects if it exits first. */
  ready: Promise<void>;
  output: () => string;
}

/**
 * Starts QEMU's own vhost-user-gpu backend (the copying reference implementation) listening on
 * `socketPath` (removed first if it exists). Pass the same path as BootOptions.gpuSocket.
 */
export function startQemuVhostUserGpu(tier: QemuTier, socketPath: string): BackendProcess {
  rmSync(socketPath, { force: true });
  const child = spawn(...dieWithParent(tier.vhostUserGpuBinary, ['--socket-path', socketPath]), {
    env: qemuEnv(tier),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.on('error', (error) => {
      done = true;
      reject(error);
    });
    child.on('close', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  exited.catch(() => {});
  const ready = (async () => {
    while (!existsSync(socketPath)) {
      if (done) throw new Error(`vhost-user-gpu exited before listening:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  ready.catch(() => {});
  return {
    pid: child.pid ?? -1,
    kill: (signal = 'SIGTERM') => {
      if (!done) child.kill(signal);
    },
    exited,
    ready,
    output: () => output,
  };
}

export interface KvmVerdict {
  usable: boolean;
  /** Why not (or how it was found to work). */
  reason: string;
  /** The host kernel and QEMU the verdict is for. */
  key: string;
  probedAt: string;
}

/** Verdicts of probeKvm in this process, by QEMU binary: what accel 'auto' follows. */
const kvmVerdicts = new Map<string, KvmVerdict>();

const KVM_PROBE_TIMEOUT_MS = 60_000;

/**
 * Finds out whether KVM works here by booting the test guest under it (no GPU, the guest command
 * `exit 0`): /dev/kvm can open and VM creation succeed while the first vCPU run fails ("KVM
 * internal error", or an MSR QEMU cannot set), so only a boot tells. The verdict is cached per
 * host kernel and QEMU version in the cache folder and decides what accel 'auto' means for
 * bootGuest in this process; `log` gets one line saying which accelerator and why.
 */
export async function probeKvm(
  tier: QemuTier,
  guest: GuestImage,
  log?: (message: string) => void,
  /** The KVM device node to check (tests point it at a stand-in to reach the boot step). */
  kvmDevice = '/dev/kvm',
): Promise<KvmVerdict> {
  const key = `${os.release()} ${os.version()}; QEMU ${tier.version}`;
  const report = (verdict: KvmVerdict): KvmVerdict => {
    kvmVerdicts.set(tier.qemuBinary, verdict);
    log?.(
      verdict.usable
        ? `accelerator: KVM (${verdict.reason})`
        : `accelerator: TCG, because KVM ${verdict.reason}`,
    );
    return verdict;
  };
  try {
    accessSync(kvmDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return report({
      usable: false,
      reason: `is unavailable: ${kvmDevice} (${code})`,
      key,
      probedAt: new Date().toISOString(),
    });
  }
  const dir = cacheDir('qemu');
  const cacheFile = path.join(dir, 'kvm-probe.json');
  let cache: Record<string, KvmVerdict> = {};
  try {
    cache = JSON.parse(await readFile(cacheFile, 'utf8')) as Record<string, KvmVerdict>;
  } catch {
    cache = {};
  }
  const cached = cache[key];
  if (cached && typeof cached.usable === 'boolean') {
    return report({ ...cached, reason: `${cached.reason} (probed ${cached.probedAt})` });
  }

  const started = Date.now();
  const qemu = bootGuest(tier, guest, {
    gpuDevice: 'none',
    guestCommand: 'exit 0',
    accel: 'kvm',
    memoryMb: 128,
    timeoutMs: KVM_PROBE_TIMEOUT_MS,
  });
  // A run-time KVM failure leaves QEMU alive with a paused guest: stop at its first report.
  const watcher = setInterval(() => {
    if (/KVM internal error|kvm run failed/i.test(qemu.stderr())) qemu.kill('SIGKILL');
  }, 50);
  const result = await qemu.exited
    .catch((error: Error) => ({ code: null, signal: null, error }))
    .finally(() => clearInterval(watcher));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  let verdict: KvmVerdict;
  if (qemu.guestStatus() === 0) {
    verdict = {
      usable: true,
      reason: `a test boot finished in ${seconds} s`,
      key,
      probedAt: new Date().toISOString(),
    };
  } else {
    const firstError = qemu
      .stderr()
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line.length > 0);
    const how = firstError
      ? `failed: ${firstError.slice(0, 300)}`
      : 'error' in result
        ? `could not be tried: ${result.error.message}`
        : `did not finish a test boot (QEMU ${result.signal ? `got ${result.signal}` : `exited ${result.code}`} after ${seconds} s)`;
    verdict = { usable: false, reason: how, key, probedAt: new Date().toISOString() };
  }
  cache[key] = verdict;
  await mkdir(dir, { recursive: true });
  const scratch = `${cacheFile}.${process.pid}.tmp`;
  await writeFile(scratch, `${JSON.stringify(cache, null, 2)}\n`);
  await rename(scratch, cacheFile);
  return report(verdict);
}
