// Builds the TypeScript in three steps: compile the scanner, run it over the protocol XML
// (output in build/protocols, not in git), then compile everything.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
const run = (command, args) => execFileSync(command, args, { cwd: root, stdio: 'inherit' });

run(process.execPath, [tsc, '-p', 'protocol-xml/tsconfig.scanner.json']);
run(process.execPath, ['dist/protocol-xml/generate.js', '--out', 'build/protocols']);
run(process.execPath, [tsc, '-p', 'tsconfig.json']);
