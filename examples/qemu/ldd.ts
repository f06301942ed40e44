// Checks that binaries unpacked from Debian packages (never installed) find their shared
// libraries on this host, by asking ldd with the environment they will run under.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * What `files` cannot resolve under `env` (a library not found, or found at too old a version),
 * as `file: what ldd said` strings; a file that does not exist is reported too. Empty when
 * everything resolves.
 */
export async function missingLibraries(
  files: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string[]> {
  const missing: string[] = [];
  for (const file of files) {
    if (!existsSync(file)) {
      missing.push(`${path.basename(file)}: not in the unpacked packages`);
      continue;
    }
    let output: string;
    try {
      const { stdout, stderr } = await execFileAsync('ldd', [file], { env });
      output = `${stdout}\n${stderr}`;
    } catch (error) {
      // ldd exits non-zero when it cannot load a file at all; what it said still explains why.
      const e = error as { stdout?: string; stderr?: string; message: string };
      output = `${e.stdout ?? ''}\n${e.stderr || e.message}`;
    }
    for (const line of output.split('\n')) {
      if (/not found/.test(line)) missing.push(`${path.basename(file)}: ${line.trim()}`);
    }
  }
  return missing;
}
