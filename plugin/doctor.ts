/**
 * `guestfb doctor`: checks what the zero-copy path needs on this host and says which path frames
 * will take and why. Every finding that is not fine carries the fix.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fd, Seal } from '../native/fd.js';
import { isSystemError } from '../native/index.js';
import type { DoctorOptions } from './cli.js';
import { DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR, DrmFormat } from './common/formats.js';
import type { CompositorInfo } from './present/probe.js';
import {
  checkDomainXml,
  chooseGpuBackend,
  GPU_DESCRIPTOR_NAME,
  libvirtSearchFolders,
} from './backend-program/descriptor.js';

const execFileAsync = promisify(execFile);

export type FindingStatus = 'ok' | 'missing' | 'warn' | 'info';

export interface Finding {
  area: 'udmabuf' | 'memfd' | 'compositor' | 'kvm' | 'qemu' | 'libvirt';
  status: FindingStatus;
  summary: string;
  /** What to do about it (for missing/warn). */
  fix?: string;
}

export interface DoctorReport {
  findings: Finding[];
  /** The path a scattered XRGB8888 guest framebuffer would take. */
  path: 'dmabuf' | 'shm' | 'unknown';
  verdict: string;
  udmabuf: {
    present: boolean;
    usable: boolean;
    listLimit: number | null;
    sizeLimitMb: number | null;
  };
  compositor: CompositorInfo | null;
}

export interface DoctorEnvironment {
  udmabufPath: string;
  udmabufParameters: string;
  kvmPath: string;
  /** QEMU binary on PATH to ask for its version. */
  qemuBinary: string;
  /** Where guestfb caches the backports QEMU. */
  qemuCache: string;
  display: string | undefined;
  /** Connects to a compositor and reports its globals and formats. */
  probeCompositor: ((display: string) => Promise<CompositorInfo>) | null;
  /** Descriptor folders of libvirt's session and system daemons; null: skip the check. */
  libvirtFolders: { session: string[]; system: string[] } | null;
  /** A domain XML to check (contents), and where it came from. */
  domainXml: { file: string; text: string } | null;
}

export function defaultEnvironment(display: string | undefined): DoctorEnvironment {
  const cacheRoot = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return {
    udmabufPath: '/dev/udmabuf',
    udmabufParameters: '/sys/module/udmabuf/parameters',
    kvmPath: '/dev/kvm',
    qemuBinary: 'qemu-system-x86_64',
    qemuCache: path.join(cacheRoot, 'guestfb', 'qemu'),
    display: display ?? (process.env.WAYLAND_DISPLAY || undefined),
    probeCompositor: null,
    libvirtFolders: { session: libvirtSearchFolders(false), system: libvirtSearchFolders(true) },
    domainXml: null,
  };
}

function errorText(error: unknown): string {
  if (isSystemError(error)) return `${error.syscall}: ${error.code}`;
  return error instanceof Error ? error.message : String(error);
}

async function readNumber(file: string): Promise<number | null> {
  try {
    const value = Number((await fsp.readFile(file, 'utf8')).trim());
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/** Pages of a tightly packed XRGB8888 frame. */
function framePages(width: number, height: number): number {
  return Math.ceil((width * height * 4) / 4096);
}

async function checkUdmabuf(env: DoctorEnvironment, findings: Finding[]) {
  const result = { present: false, usable: false, listLimit: null, sizeLimitMb: null } as {
    present: boolean;
    usable: boolean;
    listLimit: number | null;
    sizeLimitMb: number | null;
  };
  let stat;
  try {
    stat = await fsp.stat(env.udmabufPath);
  } catch {
    const release = os.release();
    findings.push({
      area: 'udmabuf',
      status: 'missing',
      summary: `${env.udmabufPath} does not exist (kernel ${release})`,
      fix:
        `load the driver with \`modprobe udmabuf\`; if there is no such module the kernel lacks ` +
        `CONFIG_UDMABUF (Debian 12's 6.1 kernel does): install a kernel that has it, e.g. ` +
        `linux-image-amd64 from bookworm-backports (6.12, CONFIG_UDMABUF=y)`,
    });
    return result;
  }
  result.present = true;
  if (!stat.isCharacterDevice()) {
    findings.push({
      area: 'udmabuf',
      status: 'missing',
      summary: `${env.udmabufPath} is not a character device`,
      fix: `remove it and load the udmabuf driver (\`modprobe udmabuf\`)`,
    });
    return result;
  }
  try {
    await fsp.access(env.udmabufPath, fsConstants.R_OK | fsConstants.W_OK);
    const device = fd.udmabufOpen(env.udmabufPath);
    fd.close(device);
    result.usable = true;
    const mode = (stat.mode & 0o777).toString(8);
    findings.push({
      area: 'udmabuf',
      status: 'ok',
      summary: `${env.udmabufPath} opens read/write (mode ${mode}, uid ${stat.uid}, gid ${stat.gid})`,
    });
  } catch (error) {
    findings.push({
      area: 'udmabuf',
      status: 'missing',
      summary: `${env.udmabufPath} cannot be opened read/write: ${errorText(error)}`,
      fix:
        `give your user access, e.g. a udev rule ` +
        `\`KERNEL=="udmabuf", GROUP="kvm", MODE="0660"\` in /etc/udev/rules.d/70-udmabuf.rules, ` +
        `then \`udevadm trigger\` and add yourself to the kvm group`,
    });
  }
  result.listLimit = await readNumber(path.join(env.udmabufParameters, 'list_limit'));
  result.sizeLimitMb = await readNumber(path.join(env.udmabufParameters, 'size_limit_mb'));
  if (result.listLimit === null || result.sizeLimitMb === null) {
    findings.push({
      area: 'udmabuf',
      status: 'warn',
      summary: `cannot read udmabuf limits under ${env.udmabufParameters}`,
      fix: 'guestfb assumes the kernel defaults (list_limit 1024, size_limit_mb 64)',
    });
  } else {
    const notes: string[] = [];
    const pages1080 = framePages(1920, 1080);
    if (result.listLimit < pages1080) {
      notes.push(
        `a 1080p frame is ${pages1080} pages, so fully scattered guest backing needs ` +
          `coalescing below ${result.listLimit} spans (guestfb coalesces; beyond that it falls back)`,
      );
    }
    const biggest = [
      [7680, 4320],
      [5120, 2880],
      [3840, 2160],
      [2560, 1440],
      [1920, 1080],
    ].find(([w, h]) => w * h * 4 <= result.sizeLimitMb! * 1024 * 1024);
    notes.push(
      biggest
        ? `frames up to ${biggest[0]}x${biggest[1]} fit size_limit_mb`
        : 'not even 1080p fits size_limit_mb',
    );
    findings.push({
      area: 'udmabuf',
      status: biggest ? 'info' : 'warn',
      summary: `limits: list_limit ${result.listLimit}, size_limit_mb ${result.sizeLimitMb}; ${notes.join('; ')}`,
      ...(biggest
        ? {}
        : {
            fix: 'raise it: `modprobe udmabuf size_limit_mb=256` (or udmabuf.size_limit_mb=256 on the kernel command line)',
          }),
    });
  }
  return result;
}

function checkMemfd(env: DoctorEnvironment, udmabufUsable: boolean, findings: Finding[]): boolean {
  let memfd = -1;
  try {
    memfd = fd.memfdCreate('guestfb-doctor', true);
    fd.ftruncate(memfd, 4096);
    fd.addSeals(memfd, Seal.SHRINK);
    const seals = fd.getSeals(memfd);
    if (!(seals & Seal.SHRINK) || seals & Seal.WRITE) {
      findings.push({
        area: 'memfd',
        status: 'missing',
        summary: `a sealed memfd has seals 0x${seals.toString(16)} (need SHRINK, not WRITE)`,
        fix: 'use a kernel with memfd sealing (Linux 3.17+)',
      });
      return false;
    }
    if (!udmabufUsable) {
      findings.push({
        area: 'memfd',
        status: 'ok',
        summary: 'sealed memfds work (F_SEAL_SHRINK set, no F_SEAL_WRITE); udmabuf not tried',
      });
      return true;
    }
    const device = fd.udmabufOpen(env.udmabufPath);
    try {
      const dmabuf = fd.udmabufCreate(device, { memfd, offset: 0, size: 4096 });
      fd.close(dmabuf);
    } finally {
      fd.close(device);
    }
    findings.push({
      area: 'memfd',
      status: 'ok',
      summary: 'a sealed memfd page became a dma-buf through UDMABUF_CREATE',
    });
    return true;
  } catch (error) {
    findings.push({
      area: 'memfd',
      status: 'missing',
      summary: `sealed memfd -> udmabuf failed: ${errorText(error)}`,
      fix:
        'guest RAM must be a memfd with F_SEAL_SHRINK and without F_SEAL_WRITE ' +
        '(QEMU: -object memory-backend-memfd,share=on,seal=on)',
    });
    return false;
  } finally {
    if (memfd >= 0) fd.close(memfd);
  }
}

async function checkCompositor(
  env: DoctorEnvironment,
  findings: Finding[],
): Promise<CompositorInfo | null> {
  if (!env.display) {
    findings.push({
      area: 'compositor',
      status: 'warn',
      summary: 'WAYLAND_DISPLAY is not set: no compositor checked',
      fix: 'run doctor inside your Wayland session or pass --display NAME',
    });
    return null;
  }
  if (!env.probeCompositor) return null;
  let info: CompositorInfo;
  try {
    info = await env.probeCompositor(env.display);
  } catch (error) {
    findings.push({
      area: 'compositor',
      status: 'missing',
      summary: `cannot talk to compositor "${env.display}": ${errorText(error)}`,
      fix: 'check WAYLAND_DISPLAY / --display and that the compositor is running',
    });
    return null;
  }
  const missingGlobals = ['wl_compositor', 'xdg_wm_base', 'wl_shm'].filter(
    (name) => !info.globals.includes(name),
  );
  if (missingGlobals.length > 0) {
    findings.push({
      area: 'compositor',
      status: 'missing',
      summary: `compositor "${env.display}" lacks ${missingGlobals.join(', ')}`,
      fix: 'use a desktop compositor (xdg-shell) such as weston, sway, GNOME or KDE',
    });
  }
  if (info.dmabufVersion === null) {
    findings.push({
      area: 'compositor',
      status: 'missing',
      summary: `compositor "${env.display}" offers no zwp_linux_dmabuf_v1`,
      fix:
        'use a compositor with a GPU renderer that imports dma-bufs (weston 14 with --renderer=gl, ' +
        'sway, GNOME, KDE); pixman/software renderers do not',
    });
  } else {
    const xrgb = info.dmabufFormats.modifiers(DrmFormat.XRGB8888);
    const linear = xrgb.includes(DRM_FORMAT_MOD_LINEAR) || xrgb.includes(DRM_FORMAT_MOD_INVALID);
    findings.push({
      area: 'compositor',
      status: linear ? 'ok' : 'missing',
      summary:
        `compositor "${env.display}": zwp_linux_dmabuf_v1 version ${info.dmabufVersion}` +
        `${info.dmabufVersion >= 4 ? ' (default feedback)' : ' (format/modifier events)'}, ` +
        `${info.dmabufFormats.size} format/modifier pairs: ${info.dmabufFormats.describe() || 'none'}`,
      ...(linear
        ? {}
        : {
            fix: 'the compositor does not take linear XR24 dma-bufs; frames will go through wl_shm',
          }),
    });
  }
  findings.push({
    area: 'compositor',
    status: 'info',
    summary: `wl_shm formats: ${info.shmFormatNames.join(' ') || 'none'}`,
  });
  return info;
}

async function checkKvm(env: DoctorEnvironment, findings: Finding[]): Promise<void> {
  try {
    const handle = await fsp.open(env.kvmPath, fsConstants.O_RDWR);
    await handle.close();
    findings.push({
      area: 'kvm',
      status: 'ok',
      summary:
        `${env.kvmPath} opens read/write; whether KVM really runs guests only a probe boot ` +
        `shows (some nested setups fail with "KVM internal error": use -accel tcg there)`,
    });
  } catch (error) {
    findings.push({
      area: 'kvm',
      status: 'warn',
      summary: `${env.kvmPath} cannot be opened read/write: ${errorText(error)}`,
      fix:
        'enable virtualization in the firmware, `modprobe kvm_intel` (or kvm_amd) and join the ' +
        'kvm group; without KVM QEMU falls back to TCG (slow), and QEMU < 8 refuses ' +
        'vhost-user-gpu without KVM',
    });
  }
}

function qemuVersion(text: string): string | null {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? null;
}

async function findFile(root: string, name: string, depth: number): Promise<string | null> {
  let entries;
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch {
    return null;
  }
  for (const entry of entries) {
    if (entry.isFile() && entry.name === name) return path.join(root, entry.name);
  }
  if (depth === 0) return null;
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const found = await findFile(path.join(root, entry.name), name, depth - 1);
    if (found) return found;
  }
  return null;
}

async function checkQemu(env: DoctorEnvironment, findings: Finding[]): Promise<void> {
  try {
    const { stdout } = await execFileAsync(env.qemuBinary, ['--version'], { timeout: 10_000 });
    const version = qemuVersion(stdout);
    const major = version ? Number(version.split('.')[0]) : 0;
    findings.push({
      area: 'qemu',
      status: major >= 8 ? 'ok' : 'warn',
      summary: `${env.qemuBinary} ${version ?? '(version not recognised)'}`,
      ...(major >= 8
        ? {}
        : {
            fix:
              'QEMU before 8 refuses vhost-user-gpu-pci without KVM; with KVM it works. ' +
              'For TCG use QEMU 10 from bookworm-backports (the demo caches one)',
          }),
    });
  } catch (error) {
    findings.push({
      area: 'qemu',
      status: 'warn',
      summary: `${env.qemuBinary} not runnable: ${errorText(error)}`,
      fix: 'install qemu-system-x86 (apt-get install qemu-system-x86)',
    });
  }
  const cached = await findFile(env.qemuCache, 'qemu-system-x86_64', 5);
  if (!cached) {
    findings.push({
      area: 'qemu',
      status: 'info',
      summary: `no cached backports QEMU under ${env.qemuCache}`,
      fix: '`npm run demo` downloads and caches one',
    });
    return;
  }
  try {
    const { stdout } = await execFileAsync(cached, ['--version'], { timeout: 10_000 });
    findings.push({
      area: 'qemu',
      status: 'ok',
      summary: `cached QEMU ${qemuVersion(stdout) ?? '(version not recognised)'} at ${cached}`,
    });
  } catch (error) {
    findings.push({
      area: 'qemu',
      status: 'info',
      summary: `cached QEMU at ${cached} does not run on its own (${errorText(error)})`,
      fix: 'it needs its extracted libraries; the demo launcher sets them up',
    });
  }
}

/** Which GPU back-end libvirt's daemons pick, and whether a domain XML suits guestfb. */
export async function checkLibvirt(env: DoctorEnvironment, findings: Finding[]): Promise<void> {
  if (env.libvirtFolders) {
    for (const [daemon, folders] of [
      ['qemu:///session', env.libvirtFolders.session],
      ['qemu:///system', env.libvirtFolders.system],
    ] as const) {
      const choice = await chooseGpuBackend(folders);
      const binary = choice.chosen?.descriptor?.binary;
      const ours = choice.chosen?.file.endsWith(GPU_DESCRIPTOR_NAME) ?? false;
      const skipped = choice.skipped.length ? ` (passed over: ${choice.skipped.join('; ')})` : '';
      if (ours) {
        findings.push({
          area: 'libvirt',
          status: 'ok',
          summary: `${daemon} starts guestfb (${binary}) for vhostuser video, from ${choice.chosen!.file}${skipped}`,
        });
      } else {
        findings.push({
          area: 'libvirt',
          status: daemon === 'qemu:///session' ? 'missing' : 'info',
          summary: choice.chosen
            ? `${daemon} would start ${binary} (${choice.chosen.file}), not guestfb${skipped}`
            : `${daemon} finds no vhost-user GPU back-end in ${folders.join(', ')}${skipped}`,
          fix: `guestfb install-libvirt ${daemon === 'qemu:///system' ? '--system' : '--user'}`,
        });
      }
    }
  }
  if (env.domainXml) {
    const check = checkDomainXml(env.domainXml.text);
    const which = check.name ? `domain ${check.name}` : env.domainXml.file;
    if (check.problems.length === 0) {
      findings.push({
        area: 'libvirt',
        status: 'ok',
        summary: `${which}: shared memfd memory and a vhostuser virtio video device`,
      });
    }
    for (const problem of check.problems) {
      findings.push({
        area: 'libvirt',
        status: 'missing',
        summary: `${which}: ${problem.summary}`,
        fix: `virsh edit ${check.name ?? 'NAME'}: ${problem.fix}`,
      });
    }
  }
}

export async function collectReport(env: DoctorEnvironment): Promise<DoctorReport> {
  const findings: Finding[] = [];
  const udmabuf = await checkUdmabuf(env, findings);
  const memfdOk = checkMemfd(env, udmabuf.usable, findings);
  const compositor = await checkCompositor(env, findings);
  await checkKvm(env, findings);
  await checkQemu(env, findings);
  await checkLibvirt(env, findings);

  const reasons: string[] = [];
  if (!udmabuf.usable) reasons.push(udmabuf.present ? 'udmabuf not accessible' : 'no udmabuf');
  if (!memfdOk) reasons.push('sealed memfd -> udmabuf fails');
  let compositorOk: boolean | null = null;
  if (compositor) {
    const xrgb = compositor.dmabufFormats.modifiers(DrmFormat.XRGB8888);
    compositorOk =
      compositor.dmabufVersion !== null &&
      (xrgb.includes(DRM_FORMAT_MOD_LINEAR) || xrgb.includes(DRM_FORMAT_MOD_INVALID));
    if (!compositorOk) reasons.push('the compositor does not import linear XR24 dma-bufs');
  }
  let reportPath: DoctorReport['path'];
  let verdict: string;
  if (reasons.length > 0) {
    reportPath = 'shm';
    verdict =
      `frames go through wl_shm (${reasons.join(', ')}): zero copies when the guest ` +
      `framebuffer is one contiguous span, else the damaged rects are copied (counted in stats)`;
  } else if (compositorOk === null) {
    reportPath = 'unknown';
    verdict = 'this host can make dma-bufs from guest memory; the compositor was not checked';
  } else {
    reportPath = 'dmabuf';
    verdict = 'zero-copy: guest pages -> udmabuf -> dma-buf -> zwp_linux_dmabuf_v1';
  }
  return { findings, path: reportPath, verdict, udmabuf, compositor };
}

const marks: Record<FindingStatus, string> = {
  ok: '[ok]     ',
  missing: '[missing]',
  warn: '[warn]   ',
  info: '[info]   ',
};

export function formatReport(report: DoctorReport): string {
  const lines: string[] = [];
  for (const finding of report.findings) {
    lines.push(`${marks[finding.status]} ${finding.area}: ${finding.summary}`);
    if (finding.fix) lines.push(`           fix: ${finding.fix}`);
  }
  lines.push('', `path: ${report.verdict}`);
  return lines.join('\n');
}

function reportJson(report: DoctorReport): string {
  const { compositor, ...rest } = report;
  const compositorJson = compositor
    ? {
        globals: compositor.globals,
        dmabufVersion: compositor.dmabufVersion,
        dmabufFormats: compositor.dmabufFormats.describe(),
        shmFormats: compositor.shmFormatNames,
      }
    : null;
  return JSON.stringify({ ...rest, compositor: compositorJson }, null, 2);
}

/** Runs the doctor for the CLI; always exits 0 when it could report. */
export async function runDoctor(options: DoctorOptions): Promise<number> {
  const env = defaultEnvironment(options.display);
  const { probeCompositor } = await import('./present/probe.js');
  env.probeCompositor = probeCompositor;
  if (options.domainXml !== undefined) {
    try {
      env.domainXml = {
        file: options.domainXml,
        text: await fsp.readFile(options.domainXml, 'utf8'),
      };
    } catch (error) {
      process.stderr.write(`guestfb doctor: --domain-xml: ${errorText(error)}\n`);
      return 1;
    }
  }
  const report = await collectReport(env);
  process.stdout.write(`${options.json ? reportJson(report) : formatReport(report)}\n`);
  return 0;
}
