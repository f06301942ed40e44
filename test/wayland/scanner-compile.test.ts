// Generates every protocol the scanner reads into a fresh folder and type-checks the result with
// `tsc --strict` (plus the repository's unused-code rules), so generator regressions fail here
// with the compiler's message rather than somewhere in the main build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { defaultXmlFiles, repositoryRoot, run } from '../../protocol-xml/generate.js';

test('generated code for every protocol XML compiles under tsc --strict', () => {
  const root = repositoryRoot();
  // Inside the repository so that node_modules (@types/node) and the runtime resolve as usual.
  const scratch = path.join(root, 'build', 'test-scratch');
  mkdirSync(scratch, { recursive: true });
  const dir = mkdtempSync(path.join(scratch, 'scanner-'));
  try {
    const out = path.join(dir, 'protocols');
    const fixture = path.join(root, 'protocol-xml/fixtures/edge_test_v1.xml');
    const result = run(out, [...defaultXmlFiles(root), fixture], () => {});
    assert.ok(result.protocols.some((p) => p.name === 'edge_test_v1'));
    assert.ok(result.protocols.length >= 30, `read ${result.protocols.length} protocols`);
    const files = readdirSync(out).filter((name) => name.endsWith('.ts'));
    assert.equal(files.length, result.protocols.length + 1);
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023'],
          types: ['node'],
          typeRoots: [path.join(root, 'node_modules/@types')],
          strict: true,
          noImplicitOverride: true,
          noUnusedLocals: true,
          noUnusedParameters: true,
          noFallthroughCasesInSwitch: true,
          skipLibCheck: true,
          noEmit: true,
        },
        files: files.map((name) => `protocols/${name}`),
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.json')],
      { encoding: 'utf8' },
    );
    assert.equal(tsc.status, 0, `tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
