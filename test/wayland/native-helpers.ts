// Helpers for the raw native Wayland binding tests: interface specs read from Debian's
// wayland.xml (a minimal reader, independent of the project's scanner), temp runtime dirs,
// child processes awaited without blocking the event loop, and fd counting.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import {
  native,
  type InterfaceSpec,
  type MessageSpec,
  type NativeClient,
  type NativeClientConnection,
  type NativeProxy,
  type NativeResource,
  type NativeServerDisplay,
} from '../../native/index.js';
import { until } from '../helpers/wait.js';

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

/** What wayland-info printed about a server, with the parts the server tests compare. */
export interface WaylandInfo {
  out: string;
  /** [interface, version, name] of each global, in the order listed. */
  globals: Array<[string, number, number]>;
  /** The wl_shm formats as fourcc names, sorted. */
  shmFormats: string[];
}

/** Runs wayland-info against `socket` in `runtimeDir`; asserts it exits 0. */
export async function waylandInfo(socket: string, runtimeDir: string): Promise<WaylandInfo> {
  const result = await run('wayland-info', [], {
    ...process.env,
    WAYLAND_DISPLAY: socket,
    XDG_RUNTIME_DIR: runtimeDir,
  }).done;
  assert.equal(result.code, 0, `wayland-info failed: ${result.stderr}`);
  const out = result.stdout;
  const globals = [...out.matchAll(/interface: '([^']+)',\s+version:\s+(\d+),\s+name:\s+(\d+)/g)];
  return {
    out,
    globals: globals.map((m): [string, number, number] => [m[1]!, Number(m[2]), Number(m[3])]),
    shmFormats: [...out.matchAll(/^\t\s*(0x[0-9a-f]+|\d+) = '(\w+)'/gm)].map((m) => m[2]!).sort(),
  };
}

/**
 * Asserts what wayland-info saw of the server tests' display: wl_compositor 5, wl_shm 1 and
 * wl_output 4 as globals 1..3, the three shm formats, and the output's one mode and names.
 */
export function assertServerInfo(
  { out, globals, shmFormats }: WaylandInfo,
  output: { width: number; height: number; model: string; name: string },
): void {
  assert.deepEqual(
    globals,
    [
      ['wl_compositor', 5, 1],
      ['wl_shm', 1, 2],
      ['wl_output', 4, 3],
    ],
    out,
  );
  const mode = `width: ${output.width} px, height: ${output.height} px, refresh: 60.000 Hz`;
  assert.ok(out.includes(mode), out);
  assert.ok(out.includes(`make: 'guestfb', model: '${output.model}'`), out);
  assert.ok(out.includes(`name: ${output.name}`), out);
  assert.match(out, /flags: current preferred/);
  assert.deepEqual(shmFormats, ['AR24', 'XB24', 'XR24']);
}

/** Number of open fds of this process. */
export function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Resolves once `file` exists; rejects if `child` exits first. */
export function waitForFile(file: string, child?: ChildProcess): Promise<void> {
  return until(() => existsSync(file), `${file} to exist`, { child, intervalMs: 20 });
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

/**
 * A small protocol of our own for the binding tests. guestfb_test: ping/pong, a request that the
 * test server's handler throws on, fds both ways, a server-created child object. guestfb_narrow
 * has a prefix of its requests (a server can create the resource with it to make later opcodes
 * unknown); guestfb_ignored is a global whose bind creates nothing.
 */
export const testProtocolSpecs: InterfaceSpec[] = [
  {
    name: 'guestfb_test',
    version: 2,
    requests: [
      { name: 'ping', signature: 'u', types: [null] },
      { name: 'fail', signature: '', types: [] },
      { name: 'send_fd', signature: 'h', types: [null] },
      { name: 'spawn', signature: 's', types: [null] },
      { name: 'destroy', signature: '', types: [] },
      { name: 'late', signature: '2', types: [] },
    ],
    events: [
      { name: 'pong', signature: 'u', types: [null] },
      { name: 'fd', signature: 'h', types: [null] },
      { name: 'spawned', signature: 'n?o', types: ['guestfb_child', 'guestfb_child'] },
      { name: 'late_event', signature: '2', types: [] },
    ],
  },
  {
    name: 'guestfb_child',
    version: 1,
    requests: [{ name: 'destroy', signature: '', types: [] }],
    events: [{ name: 'hello', signature: 'sfia', types: [null, null, null, null] }],
  },
  {
    name: 'guestfb_narrow',
    version: 2,
    requests: [{ name: 'ping', signature: 'u', types: [null] }],
    events: [{ name: 'pong', signature: 'u', types: [null] }],
  },
  {
    name: 'guestfb_ignored',
    version: 1,
    requests: [{ name: 'ping', signature: 'u', types: [null] }],
    events: [],
  },
];

export const TestRequest = { ping: 0, fail: 1, sendFd: 2, spawn: 3, destroy: 4, late: 5 };
export const TestEvent = { pong: 0, fd: 1, spawned: 2, lateEvent: 3 };

/** wl_display.sync as a promise: resolves with the callback's serial. */
export function roundtrip(connection: NativeClientConnection): Promise<number> {
  return new Promise((resolve) => {
    const callback = connection.display.marshal(0, [null], 'wl_callback')!;
    callback.setDispatcher((_opcode, args) => {
      callback.destroy();
      resolve(args[0] as number);
    });
  });
}

export interface RegistryGlobal {
  name: number;
  interfaceName: string;
  version: number;
}

/** Gets the registry and collects its globals until a roundtrip completes. */
export async function listGlobals(
  connection: NativeClientConnection,
): Promise<{ registry: NativeProxy; globals: RegistryGlobal[] }> {
  const registry = connection.display.marshal(1, [null], 'wl_registry')!;
  const globals: RegistryGlobal[] = [];
  registry.setDispatcher((opcode, args) => {
    if (opcode === 0) {
      globals.push({
        name: args[0] as number,
        interfaceName: args[1] as string,
        version: args[2] as number,
      });
    }
  });
  await roundtrip(connection);
  return { registry, globals };
}

/** wl_registry.bind of the global named `interfaceName`. */
export function bind(
  registry: NativeProxy,
  globals: RegistryGlobal[],
  interfaceName: string,
  version: number,
): NativeProxy {
  const global = globals.find((g) => g.interfaceName === interfaceName);
  if (!global) throw new Error(`no global ${interfaceName}`);
  return registry.marshal(0, [global.name, interfaceName, version, null], interfaceName)!;
}

/** Reads a whole (small) file through an fd with positional reads; does not close it. */
export function readFd(fd: number): string {
  const chunks: Buffer[] = [];
  for (let position = 0; ;) {
    const buffer = Buffer.alloc(4096);
    const count = readSync(fd, buffer, 0, buffer.length, position);
    if (count === 0) break;
    chunks.push(buffer.subarray(0, count));
    position += count;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Opens a new temp file holding `text`; the caller owns the returned fd. */
export function fdWithText(dir: string, name: string, text: string): number {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  const fd = openSync(file, 'r');
  unlinkSync(file);
  return fd;
}

/** The test protocol's server on a named socket, built on the raw binding. */
export class TestServer {
  readonly display: NativeServerDisplay;
  readonly socket: string;
  readonly errors: { error: unknown; client: NativeClient | null }[] = [];
  readonly receivedTexts: string[] = [];
  /** Create the next guestfb_test resource with the guestfb_narrow interface. */
  narrowNext = false;
  boundClients: NativeClient[] = [];
  destroyedClients = 0;
  onClientDestroyed: (() => void) | null = null;
  postEventChecks: ((resource: NativeResource) => void) | null = null;

  constructor(
    socket: string,
    private readonly fileDir: string,
  ) {
    this.display = native.createServerDisplay();
    this.display.onError((error, client) => this.errors.push({ error, client }));
    this.socket = this.display.addSocket(socket);
    this.display.createGlobal('guestfb_test', 2, (client, version, id) =>
      this.bindTest(client, version, id),
    );
    this.display.createGlobal('guestfb_ignored', 1, () => {});
  }

  private bindTest(client: NativeClient, version: number, id: number): void {
    this.boundClients.push(client);
    client.onDestroy(() => {
      this.destroyedClients++;
      this.onClientDestroyed?.();
    });
    const interfaceName = this.narrowNext ? 'guestfb_narrow' : 'guestfb_test';
    this.narrowNext = false;
    const resource: NativeResource = client.createResource(
      interfaceName,
      version,
      id,
      (opcode, args) => {
        switch (opcode) {
          case TestRequest.ping:
            resource.postEvent(TestEvent.pong, [args[0]!]);
            break;
          case TestRequest.fail:
            throw new Error('handler failure on purpose');
          case TestRequest.sendFd: {
            const fd = args[0] as number;
            try {
              this.receivedTexts.push(readFd(fd));
            } finally {
              closeSync(fd);
            }
            const reply = fdWithText(this.fileDir, 'server-reply', 'bytes from the server');
            try {
              resource.postEvent(TestEvent.fd, [reply]);
            } finally {
              closeSync(reply);
            }
            break;
          }
          case TestRequest.spawn: {
            const child: NativeResource = client.createResource(
              'guestfb_child',
              1,
              0,
              (childOpcode) => {
                if (childOpcode === 0) child.destroy();
              },
            );
            resource.postEvent(TestEvent.spawned, [child, null]);
            child.postEvent(0, [args[0]!, 1.5, -7, new Uint8Array([1, 2, 3])]);
            break;
          }
          case TestRequest.destroy:
            resource.destroy();
            break;
          default:
            resource.postEvent(TestEvent.lateEvent, []);
        }
      },
    );
    this.postEventChecks?.(resource);
  }

  destroy(): void {
    this.display.destroy();
  }
}
