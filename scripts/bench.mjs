// `npm run bench [-- --json] [-- --rounds N] [-- --frames N]`: both benchmarks in one run.
// handoff (the plugin's handoff cost, zero-copy vs copy) gets --json and --rounds; vhost-vs-qemu
// (guestfb's backend against QEMU's vhost-user-gpu) gets every argument. With --json the two
// results are printed as one object: {"handoff": ..., "vhostVsQemu": ...}.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const handoffArgs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--json') handoffArgs.push(args[i]);
  else if (args[i] === '--rounds') handoffArgs.push(args[i], args[++i]);
  else if (args[i].startsWith('--rounds=')) handoffArgs.push(args[i]);
}

function run(file, fileArgs) {
  const result = spawnSync(
    process.execPath,
    [path.join(root, 'dist/test/bench', file), ...fileArgs],
    {
      cwd: root,
      stdio: ['ignore', json ? 'pipe' : 'inherit', 'inherit'],
      encoding: 'utf8',
    },
  );
  if (result.status !== 0) {
    process.stderr.write(`bench: ${file} failed (status ${result.status ?? result.signal})\n`);
    process.exit(result.status || 1);
  }
  return json ? JSON.parse(result.stdout) : null;
}

const handoff = run('handoff.js', handoffArgs);
if (!json) process.stdout.write('\n');
const vhostVsQemu = run('vhost-vs-qemu.js', args);
if (json) process.stdout.write(`${JSON.stringify({ handoff, vhostVsQemu })}\n`);
