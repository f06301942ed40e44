// Developer CLI: run any command inside the kernel-tier VM.
//   node dist/test/vm/run.js [--modules vkms] [--timeout 300] -- CMD ARGS...
import { parseArgs } from 'node:util';
import { ensureKernelTier, runInVm } from './harness.js';

const usage = `usage: node dist/test/vm/run.js [options] -- COMMAND [ARGS...]

Boots the kernel-tier VM (Debian backports kernel with udmabuf, vkms built out of tree; the
host's root shared read-only under a RAM overlay), runs COMMAND in the repository root, prints
its stdout and stderr as they arrive and exits with its exit status (124 on timeout).

options:
  --modules LIST     comma-separated kernel modules to load first, e.g. vkms
  --timeout SECONDS  kill the VM after this long (default 300)
  --memory MB        guest memory (default 2048)
  --env NAME=VALUE   extra environment variable in the guest (repeatable)
  --cwd DIR          working folder in the guest (default: the repository root)
  --console          also print the guest's serial console (kernel log) to stderr
  --prepare          only fetch/build the kernel tier and print its paths
  -h, --help         this text

environment: GUESTFB_VM_ACCEL=kvm tries KVM instead of TCG; GUESTFB_VM_CONSOLE=1 prints the
console of every VM (also in tests); XDG_CACHE_HOME moves the cache.`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const separator = argv.indexOf('--');
  const optionArgs = separator >= 0 ? argv.slice(0, separator) : argv;
  const command = separator >= 0 ? argv.slice(separator + 1) : [];
  let parsed;
  try {
    parsed = parseArgs({
      args: optionArgs,
      options: {
        modules: { type: 'string', multiple: true },
        timeout: { type: 'string' },
        memory: { type: 'string' },
        env: { type: 'string', multiple: true },
        cwd: { type: 'string' },
        console: { type: 'boolean' },
        prepare: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
  if (parsed.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  if (parsed.prepare) {
    const tier = await ensureKernelTier();
    process.stdout.write(`${JSON.stringify(tier, null, 2)}\n`);
    return;
  }
  if (command.length === 0) fail('missing the command: put it after --');

  const env: Record<string, string> = {};
  for (const item of parsed.env ?? []) {
    const equals = item.indexOf('=');
    if (equals <= 0) fail(`--env wants NAME=VALUE, not ${item}`);
    env[item.slice(0, equals)] = item.slice(equals + 1);
  }
  const number = (value: string | undefined, name: string): number | undefined => {
    if (value === undefined) return undefined;
    const parsedNumber = Number(value);
    if (!Number.isFinite(parsedNumber) || parsedNumber <= 0)
      fail(`--${name} wants a positive number`);
    return parsedNumber;
  };
  const timeoutSeconds = number(parsed.timeout, 'timeout');
  const result = await runInVm({
    command,
    env,
    modules: (parsed.modules ?? []).flatMap((list) => list.split(',')).filter((m) => m !== ''),
    timeoutMs: timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000,
    memoryMb: number(parsed.memory, 'memory'),
    cwd: parsed.cwd,
    onOutput: (chunk, stream) =>
      (stream === 'stdout' ? process.stdout : process.stderr).write(chunk),
    onConsole: parsed.console ? (chunk) => process.stderr.write(chunk) : undefined,
  });
  if (result.timedOut) {
    process.stderr.write(
      `run: timed out after ${(result.durationMs / 1000).toFixed(1)} s; the VM was killed\n`,
    );
    process.exitCode = 124;
    return;
  }
  process.exitCode = result.status;
}

main().catch((error: unknown) => {
  process.stderr.write(`run: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
