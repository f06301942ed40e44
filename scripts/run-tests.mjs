// Runs test tiers with Node's test runner:
// `node scripts/run-tests.mjs [all|unit|system|wayland|vm|e2e]`.
// Only compiled `*.test.js` files are test entry points; helpers and in-VM tests are not.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tiers = ['unit', 'system', 'wayland', 'vm', 'e2e'];
const wanted = process.argv[2] ?? 'all';
const selected = wanted === 'all' ? tiers : [wanted];
for (const tier of selected) {
  if (!tiers.includes(tier)) {
    console.error(`unknown tier "${tier}"; expected one of: all, ${tiers.join(', ')}`);
    process.exit(2);
  }
}
if (!existsSync(path.join(root, 'dist/test'))) {
  console.error('dist/test is missing: run `npm run build` first');
  process.exit(2);
}

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.js'))
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .sort();
}

// A tier with no test file would pass without testing anything: every selected tier must have one.
const files = [];
for (const tier of selected) {
  const found = testFiles(path.join(root, 'dist/test', tier));
  if (found.length === 0) {
    console.error(`no test files in dist/test/${tier}: the ${tier} tier would test nothing`);
    process.exit(1);
  }
  files.push(...found);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', ...files.map((f) => path.relative(root, f))],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
