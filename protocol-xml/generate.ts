/**
 * The scanner CLI, run by the build: `node dist/protocol-xml/generate.js --out DIR [--xml FILE]...`
 *
 * Reads wayland.xml (pkg-config wayland-scanner), every XML of wayland-protocols (pkg-config
 * wayland-protocols: stable, then staging, then unstable) and the project's own protocol-xml/xml/,
 * or only the `--xml` files when given, and writes one TypeScript module per protocol plus
 * index.ts into DIR. Stale generated modules in DIR are removed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateProtocols, parseProtocol, selectProtocols, type Protocol } from './scanner.js';

/** The repository root: this file runs from dist/protocol-xml/ (or protocol-xml/ in the source). */
export function repositoryRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const up = path.basename(path.dirname(here)) === 'dist' ? '../..' : '..';
  return path.resolve(here, up);
}

function pkgDataDir(pkg: string, hint: string): string {
  try {
    const output = execFileSync('pkg-config', ['--variable=pkgdatadir', pkg], { encoding: 'utf8' });
    const dir = path.normalize(output.trim());
    if (dir === '.' || !existsSync(dir)) throw new Error(`pkgdatadir "${output.trim()}" missing`);
    return dir;
  } catch (error) {
    throw new Error(
      `cannot locate ${pkg} protocol XML with pkg-config (install ${hint}): ${String(error)}`,
    );
  }
}

function xmlFilesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.xml'))
    .map((name) => path.join(dir, name))
    .sort();
}

/** The protocol XML files in priority order (earlier files win interface-name clashes). */
export function defaultXmlFiles(root = repositoryRoot()): string[] {
  const wayland = path.join(pkgDataDir('wayland-scanner', 'libwayland-dev'), 'wayland.xml');
  const protocols = pkgDataDir('wayland-protocols', 'wayland-protocols');
  return [
    wayland,
    ...xmlFilesUnder(path.join(root, 'protocol-xml/xml')),
    ...['stable', 'staging', 'unstable'].flatMap((tree) =>
      xmlFilesUnder(path.join(protocols, tree)),
    ),
  ];
}

/** Module specifier from `fromDir` to `target` (posix, always relative). */
function specifier(fromDir: string, target: string): string {
  const relative = path.relative(fromDir, target).split(path.sep).join('/');
  return relative.startsWith('.') ? relative : `./${relative}`;
}

export interface RunResult {
  written: string[];
  skippedNotes: string[];
  protocols: Protocol[];
}

/** Parses `xmlFiles`, generates, and writes into `outDir`. */
export function run(outDir: string, xmlFiles: string[], log: (note: string) => void): RunResult {
  const root = repositoryRoot();
  const notes: string[] = [];
  const parsed = xmlFiles.map((file) => parseProtocol(readFileSync(file, 'utf8'), file));
  const protocols = selectProtocols(parsed, (note) => {
    notes.push(note);
    log(note);
  });
  const absoluteOut = path.resolve(outDir);
  const files = generateProtocols(protocols, {
    runtimeModule: specifier(absoluteOut, path.join(root, 'protocol-xml/runtime')),
    nativeModule: specifier(absoluteOut, path.join(root, 'native/index.js')),
  });
  mkdirSync(absoluteOut, { recursive: true });
  const names = new Set(files.map((file) => file.fileName));
  for (const existing of readdirSync(absoluteOut)) {
    if (existing.endsWith('.ts') && !names.has(existing)) rmSync(path.join(absoluteOut, existing));
  }
  for (const file of files) {
    const target = path.join(absoluteOut, file.fileName);
    // Unchanged files keep their mtime, so incremental tools see no change.
    if (existsSync(target) && readFileSync(target, 'utf8') === file.text) continue;
    writeFileSync(target, file.text);
  }
  return { written: files.map((file) => file.fileName), skippedNotes: notes, protocols };
}

function main(argv: string[]): void {
  let out: string | undefined;
  const xml: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out' && i + 1 < argv.length) out = argv[++i];
    else if (arg === '--xml' && i + 1 < argv.length) xml.push(argv[++i]);
    else throw new Error(`usage: generate --out DIR [--xml FILE]... (unexpected "${arg}")`);
  }
  if (!out) throw new Error('usage: generate --out DIR [--xml FILE]...');
  const started = process.hrtime.bigint();
  const result = run(out, xml.length > 0 ? xml : defaultXmlFiles(), (note) =>
    console.error(`protocol-xml: ${note}`),
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.error(
    `protocol-xml: ${result.protocols.length} protocols, ` +
      `${result.protocols.reduce((n, p) => n + p.interfaces.length, 0)} interfaces -> ${out} ` +
      `(${ms.toFixed(0)} ms)`,
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
