// The kernel test tier: boots Debian's backports kernel (real udmabuf, vkms built out of tree)
// under QEMU with the host's root shared read-only, runs one command in it and returns its exit
// status, stdout and stderr exactly. See test/vm/kernel-tier.ts for what gets cached where.
import type { TestContext } from 'node:test';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { ensureKernelTier, kernelCacheDir, type KernelTier } from './kernel-tier.js';
import { tail } from './process.js';

export { ensureKernelTier, kernelCacheDir, type KernelTier } from './kernel-tier.js';

export interface VmRunOptions {
  /** argv run inside the guest (looked up on the guest's PATH, which starts with node's folder). */
  command: string[];
  /** Default 300_000. On timeout QEMU is killed and the result has timedOut = true. */
  timeoutMs?: number;
  /** Extra environment inside the guest, on top of PATH, HOME, TMPDIR, LANG, TERM. */
  env?: Record<string, string>;
  /** Kernel modules to load (with their dependencies) before the command, e.g. ['vkms']. */
  modules?: string[];
  /** Default 2048. */
  memoryMb?: number;
  /** Guest stdout/stderr as it arrives. */
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** Working folder inside the guest; default the repository root (same path as on the host). */
  cwd?: string;
  /** The guest's serial console (kernel messages, init errors) as it arrives; by default it
   * goes to stderr when GUESTFB_VM_CONSOLE=1. */
  onConsole?: (chunk: string) => void;
  /** Progress of a first-run download/build of the kernel tier; default stderr. */
  progress?: (msg: string) => void;
}

export interface VmRunResult {
  /** The command's exit status (0-255; 128+N when killed by signal N); -1 on timeout. */
  status: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
  /** Everything the guest printed on its serial console. */
  console: string;
}

/** The repository root (dist/test/vm/harness.js is three folders below it). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const defaultTimeoutMs = 300_000;
const pollIntervalMs = 50;
const qemuBinary = 'qemu-system-x86_64';
const running = new Set<import('node:child_process').ChildProcess>();
let exitHookInstalled = false;

/** The absolute path of an executable on PATH, or undefined. */
function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

/** Quotes a string for POSIX sh. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Escapes a value inside a QEMU -option list (commas are doubled). */
function qemuValue(value: string): string {
  return value.replace(/,/g, ',,');
}

function checkString(what: string, value: string): void {
  if (typeof value !== 'string' || value.includes('\0')) {
    throw new TypeError(`${what} must be a string without NUL bytes: ${JSON.stringify(value)}`);
  }
}

function guestEnvironment(extra: Record<string, string> | undefined): Record<string, string> {
  const env: Record<string, string> = {
    PATH: [
      path.dirname(process.execPath),
      '/usr/local/sbin',
      '/usr/local/bin',
      '/usr/sbin',
      '/usr/bin',
      '/sbin',
      '/bin',
    ].join(':'),
    HOME: '/tmp/guestfb-home',
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    USER: 'root',
    LOGNAME: 'root',
    GUESTFB_IN_VM: '1',
  };
  for (const [name, value] of Object.entries(extra ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new TypeError(`bad environment variable name: ${JSON.stringify(name)}`);
    checkString(`env.${name}`, value);
    env[name] = value;
  }
  return env;
}

/**
 * The paths among `paths` that lie under /tmp, outermost only: the guest mounts a fresh /tmp,
 * so these are carried over to keep the checkout and the cache visible at their own paths.
 */
export function pathsUnderTmp(paths: string[]): string[] {
  const inside = (child: string, parent: string) =>
    child === parent || child.startsWith(`${parent}/`);
  const candidates = [...new Set(paths.map((p) => path.resolve(p)))].filter(
    (p) => p !== '/tmp' && inside(p, '/tmp'),
  );
  return candidates.filter((p) => !candidates.some((other) => other !== p && inside(p, other)));
}

/** The sh script the guest runs: enter cwd, set the environment, exec the command. */
function commandScript(command: string[], cwd: string, env: Record<string, string>): string {
  const lines = [
    'umask 022',
    `cd ${shellQuote(cwd)} || exit 127`,
    ...Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}`),
    `exec ${command.map(shellQuote).join(' ')}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Follows a file QEMU appends to, handing decoded text to a callback as it grows. */
class FileFollower {
  private readonly fd: number;
  private readonly decoder = new StringDecoder('utf8');
  private readonly buffer = Buffer.alloc(1 << 16);
  private readonly parts: string[] = [];
  private position = 0;

  constructor(
    file: string,
    private readonly onChunk?: (chunk: string) => void,
  ) {
    this.fd = openSync(file, 'r');
  }

  poll(): void {
    while (true) {
      const count = readSync(this.fd, this.buffer, 0, this.buffer.length, this.position);
      if (count === 0) return;
      this.position += count;
      this.emit(this.decoder.write(this.buffer.subarray(0, count)));
    }
  }

  /** Reads the rest, closes the file and returns everything read. */
  finish(): string {
    try {
      this.poll();
      this.emit(this.decoder.end());
    } finally {
      closeSync(this.fd);
    }
    return this.parts.join('');
  }

  private emit(text: string): void {
    if (text === '') return;
    this.parts.push(text);
    this.onChunk?.(text);
  }
}

function accelerator(): string[] {
  const wanted = process.env.GUESTFB_VM_ACCEL ?? 'tcg';
  if (wanted === 'kvm') return ['-accel', 'kvm', '-cpu', 'host'];
  if (wanted !== 'tcg') throw new Error(`GUESTFB_VM_ACCEL must be "tcg" or "kvm", not "${wanted}"`);
  // Multi-threaded TCG gave a rare guest oops on these machines; single-threaded did not.
  return ['-accel', 'tcg,thread=single', '-cpu', 'max'];
}

function qemuArguments(
  tier: KernelTier,
  runDir: string,
  nonce: string,
  memoryMb: number,
): string[] {
  const append = [
    'console=ttyS0',
    'loglevel=5',
    'panic=-1',
    // Under TCG on a busy host the IO-APIC timer check can miss its window and panic the boot.
    'no_timer_check',
    'rdinit=/init',
    `guestfb.run=${runDir}`,
    `guestfb.nonce=${nonce}`,
  ].join(' ');
  const port = (name: string, file: string): string[] => [
    '-chardev',
    `file,id=${name},path=${qemuValue(file)}`,
    '-device',
    `virtserialport,bus=guestfb-serial.0,chardev=${name},name=guestfb.${name}`,
  ];
  return [
    ...accelerator(),
    '-m',
    String(memoryMb),
    '-smp',
    '2',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-nic',
    'none',
    '-kernel',
    tier.kernelImage,
    '-initrd',
    tier.initramfs,
    '-append',
    append,
    '-chardev',
    `file,id=console,path=${qemuValue(path.join(runDir, 'console'))}`,
    '-serial',
    'chardev:console',
    '-virtfs',
    'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-device',
    'virtio-serial-pci,id=guestfb-serial',
    ...port('stdout', path.join(runDir, 'stdout')),
    ...port('stderr', path.join(runDir, 'stderr')),
    ...port('status', path.join(runDir, 'status')),
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x04',
  ];
}

/**
 * Boots the kernel tier, runs `options.command` in it and resolves with its exit status and
 * output. Rejects (never silently passes) when QEMU is missing, the tier cannot be prepared,
 * or the guest dies without reporting a status; a timeout resolves with timedOut = true.
 */
export async function runInVm(options: VmRunOptions): Promise<VmRunResult> {
  const { command } = options;
  if (!Array.isArray(command) || command.length === 0)
    throw new TypeError('runInVm: command must be a non-empty argv array');
  command.forEach((arg, i) => checkString(`command[${i}]`, arg));
  const modules = options.modules ?? [];
  for (const module of modules) {
    if (!/^[A-Za-z0-9_-]+$/.test(module))
      throw new TypeError(`bad module name: ${JSON.stringify(module)}`);
  }
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const memoryMb = options.memoryMb ?? 2048;
  if (!Number.isInteger(memoryMb) || memoryMb < 256)
    throw new RangeError(`memoryMb must be an integer >= 256, not ${memoryMb}`);
  const cwd = options.cwd ?? repoRoot;
  checkString('cwd', cwd);
  const env = guestEnvironment(options.env);

  const qemu = findOnPath(qemuBinary);
  if (!qemu) {
    throw new Error(
      `${qemuBinary} is not installed: run scripts/setup.sh (Debian package qemu-system-x86)`,
    );
  }
  const tier = await ensureKernelTier(options.progress);
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-vm-'));
  try {
    if (/\s/.test(runDir))
      throw new Error(
        `the temporary folder ${runDir} contains whitespace; set TMPDIR to a plain path`,
      );
    const nonce = randomBytes(8).toString('hex');
    writeFileSync(path.join(runDir, 'command.sh'), commandScript(command, cwd, env));
    writeFileSync(path.join(runDir, 'modules'), modules.map((m) => `${m}\n`).join(''));
    writeFileSync(path.join(runDir, 'kernel-release'), `${tier.kernelRelease}\n`);
    writeFileSync(path.join(runDir, 'modules-root'), `${tier.modulesRoot}\n`);
    const keep = pathsUnderTmp([repoRoot, cwd, path.dirname(kernelCacheDir())]);
    writeFileSync(path.join(runDir, 'keep'), keep.map((p) => `${p}\n`).join(''));
    for (const name of ['stdout', 'stderr', 'console', 'status'])
      writeFileSync(path.join(runDir, name), '');
    return await boot(qemu, tier, runDir, nonce, memoryMb, timeoutMs, options);
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
}

async function boot(
  qemu: string,
  tier: KernelTier,
  runDir: string,
  nonce: string,
  memoryMb: number,
  timeoutMs: number,
  options: VmRunOptions,
): Promise<VmRunResult> {
  const started = Date.now();
  const followers = {
    stdout: new FileFollower(path.join(runDir, 'stdout'), (chunk) =>
      options.onOutput?.(chunk, 'stdout'),
    ),
    stderr: new FileFollower(path.join(runDir, 'stderr'), (chunk) =>
      options.onOutput?.(chunk, 'stderr'),
    ),
    console: new FileFollower(
      path.join(runDir, 'console'),
      options.onConsole ??
        (process.env.GUESTFB_VM_CONSOLE === '1'
          ? (chunk) => process.stderr.write(chunk)
          : undefined),
    ),
  };
  const finishAll = (): Record<keyof typeof followers, string> => {
    const text = { stdout: '', stderr: '', console: '' };
    for (const name of ['stdout', 'stderr', 'console'] as const)
      text[name] = followers[name].finish();
    return text;
  };

  let qemuStderr = '';
  let timedOut = false;
  const exit = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    error?: Error;
  }>((resolve) => {
    const child = spawn(...killedWithParent(qemu, qemuArguments(tier, runDir, nonce, memoryMb)), {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    running.add(child);
    installExitHook();
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      qemuStderr += chunk;
    });
    const poller = setInterval(() => {
      for (const follower of Object.values(followers)) follower.poll();
    }, pollIntervalMs);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const done = (result: {
      code: number | null;
      signal: NodeJS.Signals | null;
      error?: Error;
    }): void => {
      clearInterval(poller);
      clearTimeout(timer);
      running.delete(child);
      resolve(result);
    };
    child.on('error', (error) => done({ code: null, signal: null, error }));
    child.on('close', (code, signal) => done({ code, signal }));
  });
  const text = finishAll();
  const durationMs = Date.now() - started;

  if (exit.error) throw exit.error;
  const result = { stdout: text.stdout, stderr: text.stderr, console: text.console, durationMs };
  if (timedOut) return { ...result, status: -1, timedOut: true };

  // The status port is authoritative; the console copy may be cut off at power-off.
  const reports = `${readFileSync(path.join(runDir, 'status'), 'utf8')}\n${text.console}`;
  const initFailure = new RegExp(`guestfb-init-failed ${nonce} (.*)`).exec(reports);
  if (initFailure) {
    throw new Error(
      `the guest's init failed: ${initFailure[1].trim()}\nconsole:\n${tail(text.console, 40)}`,
    );
  }
  const marker = new RegExp(`guestfb-exit ${nonce} (\\d+)`).exec(reports);
  if (!marker) {
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    throw new Error(
      `the VM stopped without reporting an exit status (QEMU ${how})` +
        (qemuStderr.trim() ? `\nQEMU said:\n${tail(qemuStderr, 20)}` : '') +
        `\nconsole:\n${tail(text.console, 40)}`,
    );
  }
  return { ...result, status: Number(marker[1]), timedOut: false };
}

/**
 * Wraps a command so the kernel kills it when this process dies (even by SIGKILL, when no exit
 * hook runs): util-linux's setpriv sets the parent-death signal, then execs the command.
 */
function killedWithParent(command: string, args: string[]): [string, string[]] {
  if (!existsSync('/usr/bin/setpriv')) return [command, args];
  return ['/usr/bin/setpriv', ['--pdeathsig', 'SIGKILL', '--', command, ...args]];
}

/** Kills VMs still running when this process exits, so none outlive a crashed test. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/** Passes text on line by line, each line prefixed, so guest output stands apart in logs. */
function prefixedLines(
  prefix: string,
  sink: (text: string) => void,
): { write: (chunk: string) => void; end: () => void } {
  let partial = '';
  return {
    write: (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      if (lines.length > 0) sink(lines.map((line) => `${prefix}${line}\n`).join(''));
    },
    end: () => {
      if (partial !== '') sink(`${prefix}${partial}\n`);
      partial = '';
    },
  };
}

/** The guest test runner's verdict: the failing-tests section, or the last lines of output. */
function testSummary(result: VmRunResult): string {
  const output = `${result.stdout}\n${result.stderr}`;
  const failing = output.indexOf('✖ failing tests:');
  const totals = output
    .split('\n')
    .filter((line) => /^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /.test(line))
    .join('\n');
  const verdict =
    failing >= 0 ? `${tail(output.slice(failing), 60)}\n${totals}`.trim() : tail(output, 40);
  // Kernel warnings and oopses (console loglevel 5) explain failures the test output cannot.
  const kernelLog = result.console
    .split('\n')
    .filter((line) => line.trim() !== '' && !/guestfb-exit /.test(line));
  if (kernelLog.length === 0) return verdict;
  return `${verdict}\nguest console:\n${kernelLog.slice(-40).join('\n')}`;
}

/**
 * Runs `node --test <file>` in the VM for a compiled *.vmtest.js file (path relative to the
 * repository root), streams its output to stderr, and fails the calling test with the guest's
 * summary unless every guest test passed.
 */
export async function runGuestTestFile(
  t: Pick<TestContext, 'diagnostic'>,
  file: string,
  options: Partial<VmRunOptions> = {},
): Promise<VmRunResult> {
  if (!existsSync(path.resolve(repoRoot, file))) {
    throw new Error(`${file} does not exist: run \`npm run build\` first`);
  }
  const relay = prefixedLines('[vm] ', (text) => process.stderr.write(text));
  const result = await runInVm({
    onOutput: relay.write,
    ...options,
    command: [process.execPath, '--test', '--test-reporter=spec', file],
  });
  relay.end();
  const totals = result.stdout
    .split('\n')
    .filter((line) => /^ℹ (tests|pass|fail|skipped|todo) /.test(line));
  t.diagnostic(
    `${file} in the VM: ${totals.join(', ') || 'no summary'} (${(result.durationMs / 1000).toFixed(1)} s)`,
  );
  if (result.timedOut) {
    throw new Error(
      `${file} timed out in the VM after ${result.durationMs} ms:\n${testSummary(result)}`,
    );
  }
  if (result.status !== 0) {
    throw new Error(
      `${file} failed in the VM (exit status ${result.status}):\n${testSummary(result)}`,
    );
  }
  const problem = guestTestVerdict(result.stdout);
  if (problem !== undefined) {
    throw new Error(`${file} in the VM: ${problem}:\n${testSummary(result)}`);
  }
  return result;
}

/**
 * Why a guest test run that exited 0 still does not count as passed, or undefined when it does:
 * node's runner exits 0 when every test was skipped, marked todo or filtered out, and a file
 * that proves nothing must not pass. Reads the spec reporter's closing totals.
 */
export function guestTestVerdict(stdout: string): string | undefined {
  const counts = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const total = /^ℹ (tests|pass|fail|cancelled|skipped|todo) (\d+)\s*$/.exec(line);
    if (total) counts.set(total[1], Number(total[2]));
  }
  if (!counts.has('tests') || !counts.has('pass'))
    return "no test totals in the output (the runner's summary is missing)";
  const count = (name: string): number => counts.get(name) ?? 0;
  if (count('tests') === 0) return 'no test ran';
  if (count('skipped') > 0) return `${count('skipped')} test(s) skipped`;
  if (count('todo') > 0) return `${count('todo')} test(s) marked todo`;
  if (count('fail') > 0 || count('cancelled') > 0)
    return `${count('fail')} failed, ${count('cancelled')} cancelled`;
  return undefined;
}
