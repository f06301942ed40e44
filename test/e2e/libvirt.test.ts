// End to end with Debian's libvirt: the test starts libvirtd as root in a private mount
// namespace whose /run, /var/lib, /var/log, /var/cache, /etc/libvirt and the vhost-user descriptor
// folder /usr/share/qemu/vhost-user are folders of a temporary directory (nothing on the host is
// touched). guestfb's descriptor is installed there; two TCG domains whose <emulator> is the
// cached QEMU 10 boot the test guest with memfd shared memory and a vhostuser video device.
// libvirt finds guestfb through the descriptor, starts its back-end program per domain, and the
// program hands each domain to the guestfb already running against the example compositor:
// both domains show their pattern pixel-exact there, from one guestfb process. Destroying one
// domain leaves the other updating and releases every fd guestfb took for it.
//
// The test daemon's qemu.conf turns off what a throwaway root daemon cannot or need not do:
// user/group root, dynamic_ownership 0, security_driver "none" (no AppArmor/SELinux labels),
// seccomp_sandbox 0, stdio_handler "file" (no virtlogd), no cgroup controllers, no namespaces.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  ensureGuest,
  ensureQemu,
  type GuestImage,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { repoRoot } from '../../examples/qemu/guest-image.js';
import { comparePattern, decodeCounter } from '../../examples/guest/pattern.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import type { Window } from '../../examples/compositor/core/scene.js';
import { XdgSurfaceObject } from '../../examples/compositor/protocol/xdg-surface.js';
import {
  gpuDescriptor,
  gpuProgramPath,
  installDescriptor,
} from '../../plugin/backend-program/descriptor.js';
import { arrange, screenshot, waitFor, windowImage, windowsByTitle } from './helpers/windows.js';
import { udmabufOnHost } from './helpers/udmabuf.js';

const execFileAsync = promisify(execFile);

const width = 1280;
const height = 800;
const OUTPUT = 'HEADLESS-1';
const domainNames = ['gfb-alpha', 'gfb-beta'] as const;
const slots = new Map<string, { x: number; y: number }>();

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;
let daemon: ChildProcess | null = null;
let daemonLog = '';
let compositor: Compositor | null = null;
let guestfb: ChildProcess | null = null;
let guestfbLog = '';
const defined: string[] = [];

function virshUri(): string {
  return `qemu+unix:///system?socket=${path.join(workDir, 'sock', 'libvirt-sock')}`;
}

async function virsh(...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('virsh', ['-c', virshUri(), ...args], {
      timeout: 120_000,
    });
    return stdout;
  } catch (error) {
    const failure = error as Error & { stderr?: string };
    throw new Error(`virsh ${args.join(' ')}: ${failure.stderr?.trim() || failure.message}`);
  }
}

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const candidate = path.join(dir, program);
    if (dir && existsSync(candidate)) return candidate;
  }
  return null;
}

/** Users libvirt's QEMU driver resolves at start-up even when qemu.conf says root. */
function passwdWithQemuUser(): { passwd: string; group: string } {
  let passwd = readFileSync('/etc/passwd', 'utf8');
  let group = readFileSync('/etc/group', 'utf8');
  if (!/^libvirt-qemu:/m.test(passwd)) {
    passwd += 'libvirt-qemu:x:64055:64055:libvirt qemu:/nonexistent:/usr/sbin/nologin\n';
  }
  if (!/^libvirt-qemu:/m.test(group)) group += 'libvirt-qemu:x:64055:\n';
  if (!/^kvm:/m.test(group)) group += 'kvm:x:64056:\n';
  return { passwd, group };
}

function domainXml(name: string): string {
  const command = Buffer.from('drawpattern --frames 0 --fps 2').toString('base64');
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${path.join(workDir, 'vmlinux')}</kernel>
    <initrd>${path.join(workDir, 'initrd.cpio')}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet mitigations=off guestfb.mode=${width}x${height} drm_kms_helper.fbdev_emulation=0 guestfb.cmd=${command}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>${path.join(workDir, 'emulator.sh')}</emulator>
    <serial type='file'><source path='${path.join(workDir, `${name}.console`)}'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <video><driver name='vhostuser'/><model type='virtio' heads='1'/></video>
  </devices>
</domain>
`;
}

async function startDaemon(): Promise<void> {
  for (const dir of ['run', 'varlib', 'varlog', 'varcache', 'etc', 'vhost', 'empty', 'sock']) {
    mkdirSync(path.join(workDir, dir));
  }
  const xdg = path.join(workDir, 'xdg');
  mkdirSync(xdg, { mode: 0o700 });
  const { passwd, group } = passwdWithQemuUser();
  writeFileSync(path.join(workDir, 'passwd'), passwd);
  writeFileSync(path.join(workDir, 'group'), group);
  writeFileSync(
    path.join(workDir, 'libvirtd.conf'),
    [
      `unix_sock_dir = "${path.join(workDir, 'sock')}"`,
      'auth_unix_rw = "none"',
      'auth_unix_ro = "none"',
      `log_outputs = "3:file:${path.join(workDir, 'libvirtd.log')}"`,
    ].join('\n') + '\n',
  );
  writeFileSync(
    path.join(workDir, 'etc', 'qemu.conf'),
    [
      'user = "root"',
      'group = "root"',
      'dynamic_ownership = 0',
      'security_driver = "none"',
      'seccomp_sandbox = 0',
      'stdio_handler = "file"',
      'cgroup_controllers = [ ]',
      'namespaces = [ ]',
    ].join('\n') + '\n',
  );
  // QEMU 10 from the cache: libvirt passes no environment, so a wrapper adds it and -L.
  writeFileSync(
    path.join(workDir, 'emulator.sh'),
    [
      '#!/bin/sh',
      `export QEMU_MODULE_DIR='${tier.moduleDir}'`,
      `export LD_LIBRARY_PATH='${tier.libraryPath}'`,
      `exec '${tier.qemuBinary}' ${tier.dataDirs.map((d) => `-L '${d}'`).join(' ')} "$@"`,
    ].join('\n') + '\n',
  );
  chmodSync(path.join(workDir, 'emulator.sh'), 0o755);
  // The guest files are copied: other runs may replace the cached initramfs meanwhile.
  // The uncompressed kernel boots through its PVH entry: no decompression under TCG.
  copyFileSync(guest.pvhKernel, path.join(workDir, 'vmlinux'));
  copyFileSync(guest.initrd, path.join(workDir, 'initrd.cpio'));
  installDescriptor(path.join(workDir, 'vhost'), gpuDescriptor(gpuProgramPath()));

  const binds: [string, string][] = [
    ['run', '/run'],
    ['varlib', '/var/lib'],
    ['varlog', '/var/log'],
    ['varcache', '/var/cache'],
    ['etc', '/etc/libvirt'],
    ['vhost', '/usr/share/qemu/vhost-user'],
    ['passwd', '/etc/passwd'],
    ['group', '/etc/group'],
  ];
  const lines = ['set -e', 'mount --make-rprivate /'];
  for (const [from, to] of binds) {
    lines.push(
      `mkdir -p '${to}' 2>/dev/null || true`,
      `mount --bind '${path.join(workDir, from)}' '${to}'`,
    );
  }
  // Another descriptor folder of the host must not offer libvirt another GPU back-end.
  lines.push(
    `if [ -d /etc/qemu/vhost-user ]; then mount --bind '${path.join(workDir, 'empty')}' /etc/qemu/vhost-user; fi`,
    `exec libvirtd -f '${path.join(workDir, 'libvirtd.conf')}'`,
  );
  writeFileSync(path.join(workDir, 'start-daemon.sh'), lines.join('\n') + '\n');
  daemon = spawn(
    'setpriv',
    ['--pdeathsig', 'SIGKILL', 'unshare', '--mount', 'sh', path.join(workDir, 'start-daemon.sh')],
    { env: { ...process.env, XDG_RUNTIME_DIR: xdg }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  daemon.stdout!.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  daemon.stderr!.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  const socket = path.join(workDir, 'sock', 'libvirt-sock');
  const up = await waitFor(() => existsSync(socket) || daemon!.exitCode !== null, 60_000, 50);
  assert.ok(up && existsSync(socket), `libvirtd did not come up:\n${daemonLog}`);
  await virsh('version');
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids libvirt recorded: QEMU's (NAME.pid) and the back-end program's (...-vhost-user-gpu.pid). */
function libvirtPids(kind: 'qemu' | 'helper'): Map<string, number> {
  const dir = path.join(workDir, 'run', 'libvirt', 'qemu');
  const result = new Map<string, number>();
  if (!existsSync(dir)) return result;
  for (const name of readdirSync(dir)) {
    const helper = /^\d+-(.+)-video0-vhost-user-gpu\.pid$/.exec(name);
    const qemu = /^(.+)\.pid$/.exec(name);
    const domain = kind === 'helper' ? helper?.[1] : helper ? undefined : qemu?.[1];
    if (!domain) continue;
    const pid = Number(readFileSync(path.join(dir, name), 'utf8').trim());
    if (pid > 0) result.set(domain, pid);
  }
  return result;
}

function windowFor(name: string): Window | undefined {
  for (const [title, window] of windowsByTitle(compositor!)) {
    if (title.startsWith(`${name} — `)) return window;
  }
  return undefined;
}

function windowClientPid(window: Window): number {
  const role = window.surface.roleData;
  assert.ok(role instanceof XdgSurfaceObject);
  return role.resource.client.credentials().pid;
}

/** The domain's window shows the pattern exactly; returns the frame counter it shows. */
function patternFrame(name: string): number | null {
  const window = windowFor(name);
  if (!window) return null;
  arrange(compositor!, slots);
  const image = windowImage(screenshot(compositor!, OUTPUT), window);
  const frame = decodeCounter(image);
  if (frame === null) return null;
  const result = comparePattern(image, { width, height, outputIndex: 0, frame });
  return result.mismatches === 0 ? frame : null;
}

function diagnostics(): string {
  const consoles = domainNames
    .map((name) => {
      const file = path.join(workDir, `${name}.console`);
      return existsSync(file)
        ? `--- ${name} console:\n${readFileSync(file, 'utf8').slice(-1500)}`
        : '';
    })
    .join('\n');
  const logFile = path.join(workDir, 'libvirtd.log');
  const daemonFile = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-1500) : '';
  return `\n--- guestfb:\n${guestfbLog.slice(-3000)}\n${consoles}\n--- libvirtd:\n${daemonLog.slice(-1000)}${daemonFile}`;
}

before(async () => {
  const missing = ['libvirtd', 'virsh', 'unshare', 'setpriv'].filter((p) => !which(p));
  assert.deepEqual(
    missing,
    [],
    "libvirt e2e needs Debian's libvirt-daemon-driver-qemu, libvirt-clients and util-linux (scripts/setup.sh installs them)",
  );
  assert.equal(
    process.getuid?.(),
    0,
    'the libvirt e2e test starts libvirtd in a private mount namespace: run it as root',
  );
  const progress = (msg: string) => process.stderr.write(`libvirt e2e: ${msg}\n`);
  tier = await ensureQemu(progress);
  guest = await ensureGuest(progress);
  workDir = mkdtempSync('/tmp/guestfb-libvirt-');
  await startDaemon();

  const xdg = path.join(workDir, 'xdg');
  process.env.XDG_RUNTIME_DIR = xdg;
  compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 2 * width + 40, height: height + 20, refreshMhz: 60000 }],
    socket: 'wayland-libvirt',
    log: () => undefined,
  });
  slots.set(`${domainNames[0]} — ${domainNames[0]}`, { x: 0, y: 0 });
  slots.set(`${domainNames[1]} — ${domainNames[1]}`, { x: width + 40, y: 0 });
  guestfb = spawn(
    process.execPath,
    [path.join(repoRoot(), 'bin', 'guestfb.js'), 'run', '--libvirt'],
    {
      env: { ...process.env, XDG_RUNTIME_DIR: xdg, WAYLAND_DISPLAY: 'wayland-libvirt' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  guestfb.stdout!.on('data', (chunk: Buffer) => (guestfbLog += chunk.toString()));
  guestfb.stderr!.on('data', (chunk: Buffer) => (guestfbLog += chunk.toString()));
  const listening = await waitFor(
    () => guestfbLog.includes('accepting libvirt domains') || guestfb!.exitCode !== null,
    30_000,
    50,
  );
  assert.ok(
    listening && guestfb.exitCode === null,
    `guestfb --libvirt did not start:\n${guestfbLog}`,
  );
});

after(async () => {
  for (const name of defined) {
    await virsh('destroy', name).catch(() => undefined);
  }
  // Whatever libvirt could not stop (or a daemon that died) must not outlive the test.
  if (workDir) {
    for (const pid of [...libvirtPids('qemu').values(), ...libvirtPids('helper').values()]) {
      if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
  guestfb?.kill('SIGKILL');
  daemon?.kill('SIGTERM');
  if (daemon && daemon.exitCode === null) {
    const stopped = await waitFor(() => daemon!.exitCode !== null, 10_000, 50);
    if (!stopped) daemon.kill('SIGKILL');
  }
  await compositor?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('libvirt starts guestfb for two domains; both show in one guestfb; destroy releases one', async (t) => {
  const guestfbPid = guestfb!.pid!;
  try {
    const baselineFds = fdCount(guestfbPid);
    const countsAfter: number[] = [];
    const helpers = new Map<string, number>();
    for (const name of domainNames) {
      writeFileSync(path.join(workDir, `${name}.xml`), domainXml(name));
      await virsh('define', path.join(workDir, `${name}.xml`));
      defined.push(name);
      const started = performance.now();
      await virsh('start', name);
      const shown = await waitFor(() => patternFrame(name) !== null, 240_000, 250);
      assert.ok(shown, `${name}: the pattern never appeared pixel-exact in the compositor`);
      const console = readFileSync(path.join(workDir, `${name}.console`), 'utf8');
      const drmReady = /card0 ready at ([\d.]+) s/.exec(console)?.[1] ?? '?';
      t.diagnostic(
        `${name}: virsh start to first pixel-exact frame in the compositor: ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s ` +
          `(the guest's DRM device was up at ${drmReady} s of guest uptime)`,
      );
      const helper = libvirtPids('helper').get(name);
      assert.ok(helper, `${name}: libvirt recorded its vhost-user-gpu program`);
      helpers.set(name, helper);
      countsAfter.push(fdCount(guestfbPid));
    }
    assert.match(
      guestfbLog,
      new RegExp(`${domainNames[0]}: gpu handed over by pid ${helpers.get(domainNames[0])}`),
    );
    assert.match(
      guestfbLog,
      new RegExp(`${domainNames[1]}: gpu handed over by pid ${helpers.get(domainNames[1])}`),
    );

    // The one path this host allows: guestfb logs its fallback (once, naming udmabuf as the
    // reason) where /dev/udmabuf does not open, and no fallback where it does.
    const fallback = /: fallback: (.*)/.exec(guestfbLog);
    if (udmabufOnHost().usable) assert.equal(fallback, null, 'dma-buf path: no fallback logged');
    else assert.match(fallback?.[1] ?? '', /udmabuf/, `the fallback names udmabuf:\n${guestfbLog}`);
    t.diagnostic(`path: ${fallback ? `fallback (${fallback[1]})` : 'dma-buf'}`);

    // Two windows, one process: both belong to the guestfb started before the domains.
    const windows = domainNames.map((name) => windowFor(name));
    assert.ok(windows[0] && windows[1], 'one window per domain');
    assert.deepEqual(
      windows.map((window) => windowClientPid(window!)),
      [guestfbPid, guestfbPid],
      'both windows come from the one running guestfb',
    );
    for (const helper of helpers.values()) assert.notEqual(helper, guestfbPid);
    const perDomain = [countsAfter[0]! - baselineFds, countsAfter[1]! - countsAfter[0]!];
    t.diagnostic(
      `guestfb fds: ${baselineFds} before, +${perDomain[0]} and +${perDomain[1]} per domain`,
    );
    assert.ok(perDomain[0]! > 0 && perDomain[1]! > 0, 'each domain brought its fds to guestfb');

    // Destroy the first: its window and fds go, its helper exits; the second keeps updating.
    await virsh('destroy', domainNames[0]);
    assert.ok(
      await waitFor(
        () => !windowFor(domainNames[0]) && fdCount(guestfbPid) === countsAfter[1]! - perDomain[0]!,
        30_000,
      ),
      `after destroy: window gone and guestfb at ${countsAfter[1]! - perDomain[0]!} fds (has ${fdCount(guestfbPid)})`,
    );
    assert.ok(
      await waitFor(() => !pidAlive(helpers.get(domainNames[0])!), 30_000),
      'helper of the destroyed domain exited',
    );
    const before = await waitFor(() => patternFrame(domainNames[1]) !== null, 30_000, 250);
    assert.ok(before, `${domainNames[1]} still shows its pattern`);
    const frameBefore = patternFrame(domainNames[1]) ?? -1;
    const advanced = await waitFor(
      () => {
        const frame = patternFrame(domainNames[1]);
        return frame !== null && frame > frameBefore;
      },
      60_000,
      250,
    );
    assert.ok(
      advanced,
      `${domainNames[1]} keeps updating after ${domainNames[0]} was destroyed (frame ${frameBefore})`,
    );
    assert.ok(windowFor(domainNames[1]), 'the other window stays');

    await virsh('destroy', domainNames[1]);
    assert.ok(
      await waitFor(
        () => !windowFor(domainNames[1]) && fdCount(guestfbPid) === baselineFds,
        30_000,
      ),
      `every fd released: guestfb back at ${baselineFds} fds (has ${fdCount(guestfbPid)})`,
    );
    assert.ok(
      await waitFor(() => !pidAlive(helpers.get(domainNames[1])!), 30_000),
      'helper exited',
    );
    assert.equal(guestfb!.exitCode, null, 'guestfb keeps running for the next domain');
  } catch (error) {
    throw new Error(`${(error as Error).message}${diagnostics()}`);
  }
});
