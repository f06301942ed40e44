/**
 * The "backend program conventions" of QEMU's docs/interop/vhost-user.rst, for any vhost-user
 * device type (gpu, input, ...): how a management layer such as libvirt finds out what a back-end
 * can do and hands it a socket.
 *
 *   --print-capabilities   print {"type": TYPE, "features": [...]} on stdout and exit 0; every
 *                          other argument is ignored and nothing else happens
 *   --fd=FDNUM             serve the already-connected vhost-user socket FDNUM
 *   --socket-path=PATH     serve the socket at PATH (QEMU connects)
 *
 * --fd and --socket-path exclude each other and one of them is required. Type-specific options
 * (the GPU's --render-node/--virgl, the input's --evdev-path/--no-grab) are declared by the
 * program's spec; one the spec does not offer is refused rather than silently ignored, because
 * the management layer only passes it when it believes the feature is there.
 *
 * Parsing is pure: it returns what to do, and the caller does it (testable without sockets).
 */

/** Exit status for bad arguments (like guestfb's own CLI). Runtime failures exit with 1. */
export const USAGE_EXIT_STATUS = 2;

export class BackendUsageError extends Error {
  readonly exitCode = USAGE_EXIT_STATUS;
}

export interface BackendOptionSpec {
  /** Takes a value (--name=VALUE or --name VALUE) or is a flag. */
  value: boolean;
  /** One line of help. */
  help: string;
  /**
   * Why this back-end refuses the option although the conventions define it for its type (e.g.
   * guestfb's GPU does no virgl). Unset: the option is accepted.
   */
  refused?: string;
}

export interface BackendProgramSpec {
  /** The program's name in messages and help, e.g. "guestfb-vhost-user-gpu". */
  program: string;
  /** vhost-user.json's type: "gpu", "input", ... */
  type: string;
  /** One line: what the program is. */
  description: string;
  /** vhost-user.json's features of this type that the program offers (printed by
   * --print-capabilities; libvirt only passes the options of features listed here). */
  features: readonly string[];
  /** Options beyond the common ones, without the leading dashes. */
  options: Readonly<Record<string, BackendOptionSpec>>;
}

export type BackendChannel = { kind: 'fd'; fd: number } | { kind: 'socket-path'; path: string };

export type BackendInvocation =
  | { action: 'print-capabilities'; json: string }
  | { action: 'help'; text: string }
  | {
      action: 'serve';
      channel: BackendChannel;
      /** Type-specific options given: value, or true for a flag. */
      options: Record<string, string | true>;
    };

/** The JSON object `--print-capabilities` prints (vhost-user.json's capabilities). */
export function capabilitiesJson(spec: BackendProgramSpec): string {
  return JSON.stringify({ type: spec.type, features: [...spec.features] });
}

export function backendHelp(spec: BackendProgramSpec): string {
  const lines = [
    `Usage: ${spec.program} (--fd=FDNUM | --socket-path=PATH) [options]`,
    `       ${spec.program} --print-capabilities`,
    '',
    `${spec.description}`,
    '',
    '  --fd=FDNUM            serve the already-connected vhost-user socket FDNUM',
    '  --socket-path=PATH    listen on PATH and serve the first front-end that connects',
    `  --print-capabilities  print {"type":"${spec.type}","features":[...]} and exit`,
  ];
  for (const [name, option] of Object.entries(spec.options)) {
    const flag = option.value ? `--${name}=VALUE` : `--${name}`;
    lines.push(
      `  ${flag.padEnd(20)}  ${option.help}${option.refused ? ` (refused: ${option.refused})` : ''}`,
    );
  }
  lines.push('  -h, --help            this text');
  return lines.join('\n');
}

/** Splits "--name=value" / "--name value" / "--name" into tokens; throws on positionals. */
function tokens(argv: readonly string[], takesValue: (name: string) => boolean | undefined) {
  const result: { name: string; value: string | undefined }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      result.push({ name: 'help', value: undefined });
      continue;
    }
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new BackendUsageError(`unexpected argument "${arg}"`);
    const name = match[1]!;
    let value = match[2];
    if (value === undefined && takesValue(name)) {
      value = argv[i + 1];
      if (value === undefined) throw new BackendUsageError(`--${name} needs a value`);
      i++;
    }
    result.push({ name, value });
  }
  return result;
}

/** Parses a back-end program's arguments (without node and script). Throws BackendUsageError. */
export function parseBackendArgs(
  spec: BackendProgramSpec,
  argv: readonly string[],
): BackendInvocation {
  // The conventions: with --print-capabilities every other argument is ignored.
  if (argv.includes('--print-capabilities')) {
    return { action: 'print-capabilities', json: capabilitiesJson(spec) };
  }
  const common: Record<string, boolean> = { fd: true, 'socket-path': true, help: false };
  const list = tokens(argv, (name) => common[name] ?? spec.options[name]?.value);
  let fd: number | undefined;
  let socketPath: string | undefined;
  const options: Record<string, string | true> = {};
  for (const { name, value } of list) {
    if (name === 'help') return { action: 'help', text: backendHelp(spec) };
    if (
      name in options ||
      (name === 'fd' && fd !== undefined) ||
      (name === 'socket-path' && socketPath !== undefined)
    ) {
      throw new BackendUsageError(`--${name} given twice`);
    }
    if (name === 'fd') {
      if (value === undefined || !/^\d{1,9}$/.test(value)) {
        throw new BackendUsageError(`--fd: "${value ?? ''}" is not a file descriptor number`);
      }
      fd = Number(value);
      if (fd <= 2)
        throw new BackendUsageError(`--fd=${fd}: 0, 1 and 2 are stdin, stdout and stderr`);
      continue;
    }
    if (name === 'socket-path') {
      if (!value) throw new BackendUsageError('--socket-path needs a path');
      socketPath = value;
      continue;
    }
    const option = spec.options[name];
    if (!option) throw new BackendUsageError(`unknown option --${name}`);
    if (option.refused)
      throw new BackendUsageError(`--${name} is not supported: ${option.refused}`);
    if (option.value) {
      if (!value) throw new BackendUsageError(`--${name} needs a value`);
      options[name] = value;
    } else {
      if (value !== undefined) throw new BackendUsageError(`--${name} takes no value`);
      options[name] = true;
    }
  }
  if (fd !== undefined && socketPath !== undefined) {
    throw new BackendUsageError('--fd and --socket-path exclude each other');
  }
  if (fd === undefined && socketPath === undefined) {
    throw new BackendUsageError('one of --fd=FDNUM or --socket-path=PATH is required');
  }
  const channel: BackendChannel =
    fd !== undefined ? { kind: 'fd', fd } : { kind: 'socket-path', path: socketPath! };
  return { action: 'serve', channel, options };
}

export interface BackendIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/**
 * Runs a back-end program: parses, prints capabilities or help, or calls `serve`. Resolves to
 * the exit status (0 success, 2 bad arguments, 1 failure while serving). `serve` resolves with
 * the status when the program should end (front-end gone, SIGTERM).
 */
export async function runBackendProgram(
  spec: BackendProgramSpec,
  argv: readonly string[],
  serve: (invocation: Extract<BackendInvocation, { action: 'serve' }>) => Promise<number>,
  io: BackendIo = {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  },
): Promise<number> {
  let invocation: BackendInvocation;
  try {
    invocation = parseBackendArgs(spec, argv);
  } catch (error) {
    if (!(error instanceof BackendUsageError)) throw error;
    io.stderr(`${spec.program}: ${error.message}\nTry '${spec.program} --help'.\n`);
    return error.exitCode;
  }
  if (invocation.action === 'print-capabilities') {
    io.stdout(`${invocation.json}\n`);
    return 0;
  }
  if (invocation.action === 'help') {
    io.stdout(`${invocation.text}\n`);
    return 0;
  }
  try {
    return await serve(invocation);
  } catch (error) {
    io.stderr(`${spec.program}: ${(error as Error).message}\n`);
    return 1;
  }
}
