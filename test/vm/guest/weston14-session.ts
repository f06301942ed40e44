// Helpers for driving weston 14 (test/vm/weston14.ts) from a test: start it as a child process
// in a private XDG_RUNTIME_DIR, and a Wayland client that asks weston's own capture protocol
// (weston_capture_v1, offered with --debug) for the output's pixels.
//
// weston_capture_v1 is weston's protocol, not wayland-protocols', so the build does not generate
// code for it. Its XML comes from libweston's -dev package in the cache and is parsed at run time
// by the project's scanner model: the interface tables and every opcode below are taken from it,
// so the client follows the XML instead of repeating it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { InterfaceSpec, NativeProxy, WireValue } from '../../../native/index.js';
import { fd } from '../../../native/fd.js';
import { parseProtocol, type Interface } from '../../../protocol-xml/model.js';
import { messageSignature } from '../../../protocol-xml/scanner.js';
import { Connection, type Registry } from '../../../protocol-xml/runtime/client.js';
import {
  registerInterfaces,
  registeredInterfaceNames,
} from '../../../protocol-xml/runtime/interfaces.js';
import { ClientProxy } from '../../../protocol-xml/runtime/proxy.js';
import {
  WlOutputProxy,
  WlShmPoolProxy,
  WlShmProxy,
  type WlShmFormat,
} from '../../../build/protocols/wayland.js';
import { ZwpLinuxDmabufV1Proxy } from '../../../build/protocols/linux_dmabuf_unstable_v1.js';
import { drmToShmFormat, fourccName, joinModifier } from '../../../plugin/common/formats.js';
import {
  westonArguments,
  westonEnvironment,
  type Weston14,
  type WestonRunOptions,
} from '../weston14.js';
import { until } from '../../helpers/wait.js';

// ---------------------------------------------------------------------------------------------
// weston as a child process
// ---------------------------------------------------------------------------------------------

export interface WestonProcess {
  /** Absolute path of the listening socket (a valid WAYLAND_DISPLAY). */
  readonly socketPath: string;
  /** Everything weston printed so far (its log goes to stderr). */
  log(): string;
  /** The exit status once it exited, else null. */
  readonly exited: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** SIGTERM, wait for the exit, remove the runtime folder. */
  stop(): Promise<void>;
}

/**
 * Starts weston with the tree's environment in a new private XDG_RUNTIME_DIR and resolves once
 * its socket exists (clients that connect then are served as soon as its event loop runs).
 */
export async function startWeston(
  tree: Weston14,
  options: Omit<WestonRunOptions, 'socket'>,
): Promise<WestonProcess> {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-weston-'));
  const socket = 'guestfb-weston';
  const socketPath = path.join(runtimeDir, socket);
  let output = '';
  let exited: WestonProcess['exited'] = null;
  let child: ChildProcess;
  try {
    child = spawn(tree.weston, westonArguments({ ...options, socket }), {
      env: westonEnvironment(tree, runtimeDir),
      // Not 'ignore': Node keeps the /dev/null it opens for that for good, which would look like
      // a leaked fd to a test comparing its fd count with a baseline.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin!.end();
  } catch (error) {
    rmSync(runtimeDir, { recursive: true, force: true });
    throw error;
  }
  const closed = new Promise<void>((resolve) => {
    child.on('close', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  child.on('error', (error) => {
    output += `\nspawn failed: ${error.message}\n`;
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      output += chunk;
    });
  }
  const weston: WestonProcess = {
    socketPath,
    log: () => output,
    get exited() {
      return exited;
    },
    async stop() {
      if (exited === null) child.kill('SIGTERM');
      await closed;
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
  try {
    await until(() => exited !== null || existsSync(socketPath), 'weston to create its socket', {
      limitMs: 180_000,
      intervalMs: 20,
    });
    if (exited !== null) {
      throw new Error(`weston exited before listening (${JSON.stringify(exited)}):\n${output}`);
    }
  } catch (error) {
    await weston.stop();
    throw error;
  }
  return weston;
}

// ---------------------------------------------------------------------------------------------
// weston_capture_v1, from the XML at run time
// ---------------------------------------------------------------------------------------------

const CAPTURE = 'weston_capture_v1';
const CAPTURE_SOURCE = 'weston_capture_source_v1';

interface CaptureProtocol {
  capture: Interface;
  source: Interface;
  /** weston_capture_v1.source entries: name -> value. */
  sources: Map<string, number>;
}

let captureProtocol: CaptureProtocol | null = null;

function opcode(iface: Interface, kind: 'requests' | 'events', name: string): number {
  const index = iface[kind].findIndex((message) => message.name === name);
  if (index < 0) throw new Error(`${iface.name} has no ${kind.slice(0, -1)} "${name}"`);
  return index;
}

function specOf(iface: Interface): InterfaceSpec {
  const messages = (list: Interface['requests']) =>
    list.map((message) => ({ name: message.name, ...messageSignature(message) }));
  return {
    name: iface.name,
    version: iface.version,
    requests: messages(iface.requests),
    events: messages(iface.events),
  };
}

/** Reads weston-output-capture.xml and registers its interfaces (once per process). */
export function loadCaptureProtocol(xmlFile: string): void {
  if (captureProtocol) return;
  const protocol = parseProtocol(readFileSync(xmlFile, 'utf8'), xmlFile);
  const find = (name: string): Interface => {
    const iface = protocol.interfaces.find((candidate) => candidate.name === name);
    if (!iface) throw new Error(`${xmlFile} defines no ${name}`);
    return iface;
  };
  const capture = find(CAPTURE);
  const source = find(CAPTURE_SOURCE);
  const sourceEnum = capture.enums.find((e) => e.name === 'source');
  if (!sourceEnum) throw new Error(`${xmlFile}: ${CAPTURE} has no enum "source"`);
  const known = new Set(registeredInterfaceNames());
  registerInterfaces([capture, source].filter((i) => !known.has(i.name)).map(specOf));
  captureProtocol = {
    capture,
    source,
    sources: new Map(sourceEnum.entries.map((entry) => [entry.name, entry.value])),
  };
}

function loaded(): CaptureProtocol {
  if (!captureProtocol) throw new Error('loadCaptureProtocol() was not called');
  return captureProtocol;
}

interface CaptureSourceEvents {
  format(drmFormat: number): void;
  size(width: number, height: number): void;
  complete(): void;
  retry(): void;
  failed(message: string | null): void;
}

class CaptureSourceProxy extends ClientProxy {
  static readonly interfaceName = CAPTURE_SOURCE;
  static readonly version = 1;
  listener: Partial<CaptureSourceEvents> | null = null;

  capture(buffer: ClientProxy): void {
    this.marshal(opcode(loaded().source, 'requests', 'capture'), [buffer.native], false);
  }

  destroy(): void {
    if (this.alive) this.marshal(opcode(loaded().source, 'requests', 'destroy'), [], true);
  }

  protected override dispatchEvent(code: number, args: WireValue[]): void {
    const events = loaded().source.events;
    const name = events[code]?.name;
    const listener = this.listener;
    switch (name) {
      case 'format':
        listener?.format?.(args[0] as number);
        return;
      case 'size':
        listener?.size?.(args[0] as number, args[1] as number);
        return;
      case 'complete':
        listener?.complete?.();
        return;
      case 'retry':
        listener?.retry?.();
        return;
      case 'failed':
        listener?.failed?.(args[0] as string | null);
        return;
      default:
        super.dispatchEvent(code, args);
    }
  }
}

class CaptureProxy extends ClientProxy {
  static readonly interfaceName = CAPTURE;
  static readonly version = 1;

  /** weston_capture_v1.create, with the arguments placed by their names in the XML. */
  create(output: WlOutputProxy, source: number): CaptureSourceProxy {
    const { capture } = loaded();
    const request = capture.requests[opcode(capture, 'requests', 'create')]!;
    const args: WireValue[] = request.args.map((arg) => {
      if (arg.type === 'new_id') return null;
      if (arg.type === 'object') return output.native;
      return source;
    });
    const created: NativeProxy = this.marshalConstructor(
      opcode(capture, 'requests', 'create'),
      args,
      CAPTURE_SOURCE,
      1,
      false,
    );
    return new CaptureSourceProxy(created);
  }

  destroy(): void {
    if (this.alive) this.marshal(opcode(loaded().capture, 'requests', 'destroy'), [], true);
  }
}

/** One captured image: 32-bit pixels, little-endian words as the DRM fourcc describes. */
export interface CapturedImage {
  format: number;
  width: number;
  height: number;
  /** A copy of the pixels (stride = width). */
  words: Uint32Array;
}

/**
 * A second Wayland client of weston (apart from guestfb): reads what weston advertises and
 * captures its output with weston_capture_v1.
 */
export class WestonProbe {
  private constructor(
    readonly connection: Connection,
    readonly registry: Registry,
    private readonly output: WlOutputProxy,
    private readonly shm: WlShmProxy,
    private readonly capturer: CaptureProxy,
  ) {}

  /** Connects to weston's socket; `captureXml` is weston-output-capture.xml. */
  static async connect(socketPath: string, captureXml: string): Promise<WestonProbe> {
    loadCaptureProtocol(captureXml);
    const connection = Connection.connect(socketPath);
    try {
      const registry = await connection.registry();
      if (!registry.find(CAPTURE)) {
        throw new Error(`weston offers no ${CAPTURE} (was it started with --debug?)`);
      }
      const output = registry.bindFirst(WlOutputProxy);
      const shm = registry.bindFirst(WlShmProxy);
      const capturer = registry.bindFirst(CaptureProxy);
      await connection.roundtrip();
      return new WestonProbe(connection, registry, output, shm, capturer);
    } catch (error) {
      connection.disconnect();
      throw error;
    }
  }

  /** The linux-dmabuf global's version, or null when weston offers none. */
  get dmabufVersion(): number | null {
    return this.registry.find(ZwpLinuxDmabufV1Proxy)?.version ?? null;
  }

  /**
   * The (format, modifier) pairs linux-dmabuf v3 announces on bind (format and modifier
   * events), as fourcc name -> modifiers.
   */
  async dmabufFormats(): Promise<Map<string, bigint[]>> {
    const global = this.registry.find(ZwpLinuxDmabufV1Proxy);
    if (!global) throw new Error('weston offers no zwp_linux_dmabuf_v1');
    const dmabuf = this.registry.bind(global, ZwpLinuxDmabufV1Proxy, 3);
    const formats = new Map<string, bigint[]>();
    dmabuf.setListener({
      modifier: (format, hi, lo) => {
        const name = fourccName(format);
        formats.set(name, [...(formats.get(name) ?? []), joinModifier(hi, lo)]);
      },
    });
    await this.connection.roundtrip();
    dmabuf.destroy();
    return formats;
  }

  /**
   * Captures the output from `sourceName` (an entry of weston_capture_v1.source, e.g.
   * "framebuffer") into a wl_shm buffer and returns a copy of the pixels.
   */
  async capture(sourceName = 'framebuffer'): Promise<CapturedImage> {
    const value = loaded().sources.get(sourceName);
    if (value === undefined) throw new Error(`${CAPTURE} has no source "${sourceName}"`);
    const source = this.capturer.create(this.output, value);
    const info = { format: -1, width: 0, height: 0 };
    let outcome: { result: 'complete' | 'retry' | 'failed'; message?: string | null } | null = null;
    source.listener = {
      format: (format) => (info.format = format),
      size: (width, height) => Object.assign(info, { width, height }),
      complete: () => (outcome = { result: 'complete' }),
      retry: () => (outcome = { result: 'retry' }),
      failed: (message) => (outcome = { result: 'failed', message }),
    };
    try {
      // format and size come right after create; retry means they changed: ask again.
      for (let attempt = 0; attempt < 5; attempt++) {
        await this.connection.roundtrip();
        if (info.format < 0 || info.width < 1 || info.height < 1) {
          throw new Error(`${CAPTURE_SOURCE} sent no format/size (${JSON.stringify(info)})`);
        }
        outcome = null;
        const image = await this.captureInto(source, info.format, info.width, info.height, () =>
          outcome === null ? null : outcome,
        );
        if (image) return image;
      }
      throw new Error(`${CAPTURE_SOURCE}: capture kept asking for a retry`);
    } finally {
      source.destroy();
    }
  }

  /** One capture into a fresh wl_shm buffer; null on retry. Frees the buffer either way. */
  private async captureInto(
    source: CaptureSourceProxy,
    format: number,
    width: number,
    height: number,
    outcome: () => { result: 'complete' | 'retry' | 'failed'; message?: string | null } | null,
  ): Promise<CapturedImage | null> {
    if (width > 16384 || height > 16384) throw new Error(`capture size ${width}x${height}`);
    const stride = width * 4;
    const size = stride * height;
    const memfd = fd.memfdCreate('guestfb-weston-capture', false);
    let mapping: ArrayBuffer | null = null;
    let pool: WlShmPoolProxy;
    try {
      fd.ftruncate(memfd, size);
      mapping = fd.mmap(memfd, 0, size, true);
      // libwayland dups the fd for the request: ours is closed right after.
      pool = this.shm.createPool(memfd, size);
    } catch (error) {
      if (mapping) fd.munmap(mapping);
      throw error;
    } finally {
      fd.close(memfd);
    }
    const pixels = mapping;
    const buffer = pool.createBuffer(
      0,
      width,
      height,
      stride,
      drmToShmFormat(format) as WlShmFormat,
    );
    try {
      source.capture(buffer);
      this.connection.flush();
      await waitForEvents(this.connection, () => outcome() !== null, 'the capture result');
      const result = outcome()!;
      if (result.result === 'retry') return null;
      if (result.result === 'failed') {
        throw new Error(`weston's capture failed: ${result.message ?? '(no message)'}`);
      }
      return { format, width, height, words: new Uint32Array(pixels.slice(0)) };
    } finally {
      buffer.destroy();
      pool.destroy();
      fd.munmap(pixels);
    }
  }

  close(): void {
    this.capturer.destroy();
    this.connection.disconnect();
  }
}

/** Waits for `done` while events arrive (roundtrips keep the queue moving). */
function waitForEvents(connection: Connection, done: () => boolean, what: string) {
  return until(done, what, {
    limitMs: 180_000,
    intervalMs: 20,
    step: () => connection.roundtrip(),
  });
}
