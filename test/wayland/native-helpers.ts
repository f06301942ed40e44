// Helpers for the raw native Wayland binding tests: interface specs read from Debian's
// wayland.xml (a minimal reader, independent of the project's scanner), temp runtime dirs,
// child processes awaited without blocking the event loop, and fd counting.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import type { InterfaceSpec, MessageSpec } from '../../native/index.js';

type XmlNode = Record<string, unknown>;

function asArray(value: unknown): XmlNode[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]) as XmlNode[];
}

const letters: Record<string, string> = {
  int: 'i',
  uint: 'u',
  fixed: 'f',
  string: 's',
  object: 'o',
  new_id: 'n',
  array: 'a',
  fd: 'h',
};

function messageSpec(node: XmlNode): MessageSpec {
  let signature = typeof node['@_since'] === 'string' ? node['@_since'] : '';
  const types: (string | null)[] = [];
  for (const arg of asArray(node.arg)) {
    const type = String(arg['@_type']);
    const iface = typeof arg['@_interface'] === 'string' ? arg['@_interface'] : null;
    const nullable = arg['@_allow-null'] === 'true' ? '?' : '';
    if (type === 'new_id' && iface === null) {
      signature += 'sun';
      types.push(null, null, null);
      continue;
    }
    const letter = letters[type];
    if (letter === undefined) throw new Error(`unknown arg type ${type}`);
    signature += nullable + letter;
    types.push(letter === 'o' || letter === 'n' ? iface : null);
  }
  return { name: String(node['@_name']), signature, types };
}

/** Reads every interface of a protocol XML file into InterfaceSpecs. */
export function readProtocolSpecs(file: string): InterfaceSpec[] {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_' });
  const document = parser.parse(readFileSync(file, 'utf8')) as XmlNode;
  const protocol = document.protocol as XmlNode;
  return asArray(protocol.interface).map((iface) => ({
    name: String(iface['@_name']),
    version: Number(iface['@_version']),
    requests: asArray(iface.request).map(messageSpec),
    events: asArray(iface.event).map(messageSpec),
  }));
}

/** Debian's core protocol file, located through pkg-config. */
export function coreProtocolSpecs(): InterfaceSpec[] {
  const dataDir = execFileSync('pkg-config', ['--variable=pkgdatadir', 'wayland-scanner'], {
    encoding: 'utf8',
  }).trim();
  return readProtocolSpecs(path.join(dataDir, 'wayland.xml'));
}

/** A private XDG_RUNTIME_DIR, set in process.env (libwayland reads it at call time). */
export function useTempRuntimeDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-wl-'));
  const previous = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = dir;
  return {
    dir,
    remove: () => {
      if (previous === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = previous;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a program asynchronously (the server under test lives on this event loop). */
export function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; done: Promise<ChildResult> } {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<ChildResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Number of open fds of this process. */
export function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Resolves once `file` exists, checking after each turn of the event loop's check phase. */
export async function waitForFile(file: string, child?: ChildProcess): Promise<void> {
  for (;;) {
    if (existsSync(file)) return;
    if (child && child.exitCode !== null) throw new Error(`process exited (${child.exitCode})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Interfaces by name, for looking up opcodes in tests. */
export function opcodes(specs: InterfaceSpec[], name: string): Record<string, number> {
  const spec = specs.find((s) => s.name === name);
  if (!spec) throw new Error(`no interface ${name}`);
  const table: Record<string, number> = {};
  spec.requests.forEach((m, i) => (table[`request:${m.name}`] = i));
  spec.events.forEach((m, i) => (table[`event:${m.name}`] = i));
  return table;
}
