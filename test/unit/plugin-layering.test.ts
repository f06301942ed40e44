/**
 * The plugin's layers import downward only: common/ (the shared vocabulary) imports nothing of
 * the plugin above it; vhost-user/ and dmabuf/ build on common/; a source imports neither the
 * present layer nor another source; the API (index.ts, cli.ts) sits on top. Read from the
 * TypeScript sources, so a new import that breaks a rule fails here with its file and line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** What each plugin folder may import from inside plugin/ (besides its own folder). */
const allowed: Record<string, readonly string[]> = {
  common: [],
  dmabuf: ['common'],
  'vhost-user': ['common'],
  'virtio-input': ['common', 'vhost-user', 'guest-input.ts'],
  sources: ['common', 'vhost-user', 'sources/shared'],
  present: ['common', 'dmabuf', 'sources/shared', 'stats.ts', 'guest-input.ts'],
};

/** Sources that are single files; every other file directly in sources/ is shared by them. */
const singleFileSources = new Set(['sources/pattern.ts']);

/** The layer of a file under plugin/: its folder, one source, or a top-level file. */
function layerOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'sources' && parts.length > 2) return `sources/${parts[1]}`;
  if (parts[0] === 'sources') return singleFileSources.has(file) ? file : 'sources/shared';
  return parts.length > 1 ? parts[0]! : file;
}

function rulesFor(layer: string): readonly string[] | undefined {
  if (layer === 'sources/shared') return ['common'];
  return layer.startsWith('sources/') ? allowed.sources : allowed[layer];
}

/** Violations in one file's text; `file` is relative to plugin/. */
export function layeringViolations(file: string, text: string): string[] {
  const layer = layerOf(file);
  const rules = rulesFor(layer);
  if (!rules) return [];
  const problems: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    for (const match of line.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), match[1]!));
      if (target.startsWith('../')) continue; // outside plugin/: native, generated protocol
      const targetTs = target.replace(/\.js$/, '.ts');
      const targetLayer = layerOf(targetTs);
      if (targetLayer === layer) continue;
      const ok = rules.some((rule) => targetTs === rule || targetLayer === rule);
      if (!ok) problems.push(`plugin/${file}:${index + 1} (${layer}) imports ${targetTs}`);
    }
  });
  return problems;
}

function pluginFiles(): string[] {
  const dir = path.join(root, 'plugin');
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .map((file) => file.split(path.sep).join('/'))
    .sort();
}

test('the layering check sees the violations it is there for', () => {
  const sibling = "import { x } from '../shared-bar/index.js';\n";
  assert.deepEqual(layeringViolations('sources/virtio-gpu/index.ts', sibling), [
    'plugin/sources/virtio-gpu/index.ts:1 (sources/virtio-gpu) imports sources/shared-bar/index.ts',
  ]);
  const upward = "const a = 1;\nimport { y } from '../present/plan.js';\n";
  assert.deepEqual(layeringViolations('sources/pattern.ts', upward), [
    'plugin/sources/pattern.ts:2 (sources/pattern.ts) imports present/plan.ts',
  ]);
  assert.equal(layeringViolations('common/formats.ts', "from '../dmabuf/index.js'").length, 1);
  assert.deepEqual(layeringViolations('sources/pattern.ts', "from '../common/backing.js'"), []);
  assert.deepEqual(layeringViolations('sources/pattern.ts', "from '../../native/fd.js'"), []);
});

test('plugin/ imports downward only: no source imports present/ or another source', () => {
  const files = pluginFiles();
  assert.ok(files.includes('sources/virtio-gpu/index.ts') && files.includes('common/formats.ts'));
  const problems = files.flatMap((file) =>
    layeringViolations(file, readFileSync(path.join(root, 'plugin', file), 'utf8')),
  );
  assert.deepEqual(problems, []);
});
