// Small child-process helpers for the kernel tier: run a tool, keep its output, stream its lines.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called for each complete output line (stdout and stderr) as it arrives. */
  onLine?: (line: string) => void;
  /** What to tell the user when the tool is not installed. */
  installHint?: string;
}

/** Runs `command args` to completion. Rejects only when the tool cannot be started. */
export function runTool(
  command: string,
  args: string[],
  options: ToolOptions = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const pending = { stdout: '', stderr: '' };
    const relay = (stream: 'stdout' | 'stderr', chunk: Buffer): void => {
      if (!options.onLine) return;
      const lines = (pending[stream] + chunk.toString('utf8')).split(/\r?\n|\r/);
      pending[stream] = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') options.onLine(line);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk);
      relay('stdout', chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk);
      relay('stderr', chunk);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        const hint = options.installHint ? `; ${options.installHint}` : '';
        reject(new Error(`${command} is not installed (not found on PATH)${hint}`));
      } else {
        reject(error);
      }
    });
    child.on('close', (code, signal) => {
      for (const stream of ['stdout', 'stderr'] as const) {
        if (options.onLine && pending[stream].trim() !== '') options.onLine(pending[stream]);
      }
      resolve({
        status: code ?? 128 + (signal ? constants.signals[signal] : 0),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Runs a tool and throws an Error naming `what` failed, with the tail of its output. */
export async function runToolChecked(
  what: string,
  command: string,
  args: string[],
  options: ToolOptions = {},
): Promise<ToolResult> {
  const result = await runTool(command, args, options);
  if (result.status !== 0) {
    throw new Error(
      `${what} failed (${command} exited with status ${result.status}):\n` +
        tail(`${result.stdout}\n${result.stderr}`, 30),
    );
  }
  return result;
}

/** The last `count` non-empty lines of `text`. */
export function tail(text: string, count: number): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-count)
    .join('\n');
}
