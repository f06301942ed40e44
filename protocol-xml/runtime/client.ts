/**
 * The client side of the runtime: a Connection around the addon's wl_display connection, with
 * non-blocking roundtrips and a Registry that collects globals and binds them to generated
 * proxy classes.
 *
 * Nothing here blocks: the addon reads and flushes the socket from Node's loop, `roundtrip()`
 * resolves when wl_display.sync's callback fires, and a connection failure (protocol error,
 * hang-up) rejects every pending roundtrip with a ProtocolError carrying ProtocolErrorInfo.
 */
import { native, type NativeClientConnection, type ProtocolErrorInfo } from '../../native/index.js';
import { WlCallbackProxy, WlDisplayProxy, WlRegistryProxy } from '../../build/protocols/wayland.js';
import { ensureInterfacesDefined } from './interfaces.js';
import type { ClientProxy, ProxyClass } from './proxy.js';

/** The connection failed: a protocol error (info.code/interfaceName/objectId) or an I/O error. */
export class ProtocolError extends Error {
  readonly info: ProtocolErrorInfo;

  constructor(info: ProtocolErrorInfo) {
    const where =
      info.interfaceName !== undefined
        ? ` on ${info.interfaceName}@${info.objectId ?? '?'} (code ${info.code ?? '?'})`
        : '';
    super(
      `wayland connection failed: errno ${info.errno}${where}${info.message ? `: ${info.message}` : ''}`,
    );
    this.name = 'ProtocolError';
    this.info = info;
  }
}

/** One advertised global. */
export interface GlobalInfo {
  name: number;
  interface: string;
  version: number;
}

export class Connection {
  readonly native: NativeClientConnection;
  /** wl_display (object 1): sends sync/get_registry; libwayland handles its events itself. */
  readonly display: WlDisplayProxy;
  #error: ProtocolError | null = null;
  readonly #pending = new Set<(error: ProtocolError) => void>();
  readonly #errorListeners: ((error: ProtocolError) => void)[] = [];

  constructor(nativeConnection: NativeClientConnection) {
    ensureInterfacesDefined();
    this.native = nativeConnection;
    this.display = new WlDisplayProxy(nativeConnection.display);
    nativeConnection.onError((info) => this.#fail(new ProtocolError(info)));
  }

  /** wl_display_connect: `name` is a socket name or path (WAYLAND_DISPLAY rules when omitted). */
  static connect(name?: string): Connection {
    ensureInterfacesDefined();
    return new Connection(native.connect(name));
  }

  /** wl_display_connect_to_fd. Takes ownership of `fd`. */
  static connectToFd(fd: number): Connection {
    ensureInterfacesDefined();
    return new Connection(native.connectToFd(fd));
  }

  /** The error that ended the connection, if any. */
  get error(): ProtocolError | null {
    return this.#error;
  }

  get connected(): boolean {
    return this.native.connected && this.#error === null;
  }

  /** True while the socket is full (see NativeClientConnection.writeBlocked). */
  get writeBlocked(): boolean {
    return this.native.writeBlocked;
  }

  /**
   * Runs `listener` once when the connection fails (at once if it already has). The connection
   * stays allocated until disconnect(); a listener that gives up calls it.
   */
  onError(listener: (error: ProtocolError) => void): void {
    if (this.#error) listener(this.#error);
    else this.#errorListeners.push(listener);
  }

  /** Exceptions thrown by event listeners (the addon catches them at its boundary). */
  onListenerError(handler: (error: unknown) => void): void {
    this.native.onListenerError(handler);
  }

  /** wl_display.sync: a callback whose `done` fires after the server handled all earlier requests. */
  sync(): WlCallbackProxy {
    this.#checkUsable();
    return this.display.sync();
  }

  /**
   * Resolves once the server has processed every request sent so far (and the events it sent in
   * reply were dispatched); rejects with the ProtocolError if the connection fails first.
   */
  roundtrip(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise<void>((resolve, reject) => {
      const callback = this.sync();
      const fail = (error: ProtocolError) => reject(error);
      this.#pending.add(fail);
      callback.setListener({
        done: () => {
          this.#pending.delete(fail);
          callback.destroyProxy();
          resolve();
        },
      });
      this.native.flush();
    });
  }

  /** wl_display.get_registry, wrapped: collects globals; `await connection.roundtrip()` to fill. */
  getRegistry(): Registry {
    this.#checkUsable();
    return new Registry(this.display.getRegistry());
  }

  /** A registry with the initial globals collected (one roundtrip). */
  async registry(): Promise<Registry> {
    const registry = this.getRegistry();
    await this.roundtrip();
    return registry;
  }

  flush(): void {
    if (this.native.connected) this.native.flush();
  }

  /** wl_display_disconnect: destroys every proxy. Pending roundtrips reject. */
  disconnect(): void {
    // Also after a failure (connected is false then, but the connection is still allocated).
    this.native.disconnect();
    if (!this.#error) this.#fail(new ProtocolError({ errno: 0, message: 'disconnected' }), false);
  }

  #checkUsable(): void {
    if (this.#error) throw this.#error;
    if (!this.native.connected) throw new Error('wayland connection is closed');
  }

  #fail(error: ProtocolError, notify = true): void {
    if (this.#error) return;
    this.#error = error;
    const told = this.#pending.size + this.#errorListeners.length;
    for (const reject of this.#pending) reject(error);
    this.#pending.clear();
    if (!notify) return;
    // Like the addon without a handler: a failure nobody hears about still gets reported.
    if (told === 0) console.error(`guestfb: ${error.message}`);
    for (const listener of this.#errorListeners.splice(0)) listener(error);
  }
}

/** The globals a wl_registry announced, and binding them to generated proxy classes. */
export class Registry {
  readonly proxy: WlRegistryProxy;
  readonly #globals = new Map<number, GlobalInfo>();
  readonly #added: ((global: GlobalInfo) => void)[] = [];
  readonly #removed: ((global: GlobalInfo) => void)[] = [];

  constructor(proxy: WlRegistryProxy) {
    this.proxy = proxy;
    proxy.setListener({
      global: (name, interfaceName, version) => {
        const global = { name, interface: interfaceName, version };
        this.#globals.set(name, global);
        for (const listener of this.#added) listener(global);
      },
      globalRemove: (name) => {
        const global = this.#globals.get(name);
        if (!global) return;
        this.#globals.delete(name);
        for (const listener of this.#removed) listener(global);
      },
    });
  }

  /** Every global currently advertised, in announcement order. */
  get globals(): GlobalInfo[] {
    return [...this.#globals.values()];
  }

  /** The first global of an interface (by interface name or generated proxy class). */
  find(what: string | ProxyClass<ClientProxy>): GlobalInfo | undefined {
    const name = typeof what === 'string' ? what : what.interfaceName;
    return this.globals.find((global) => global.interface === name);
  }

  findAll(what: string | ProxyClass<ClientProxy>): GlobalInfo[] {
    const name = typeof what === 'string' ? what : what.interfaceName;
    return this.globals.filter((global) => global.interface === name);
  }

  onGlobal(listener: (global: GlobalInfo) => void): void {
    this.#added.push(listener);
  }

  onGlobalRemove(listener: (global: GlobalInfo) => void): void {
    this.#removed.push(listener);
  }

  /**
   * wl_registry.bind of `global` to a generated proxy class at the highest version both sides
   * support: min(`version`, the global's version). `version` (what the caller implements)
   * defaults to the class's XML version and may not exceed it.
   */
  bind<P extends ClientProxy>(
    global: GlobalInfo,
    proxyClass: ProxyClass<P>,
    version = proxyClass.version,
  ): P {
    if (global.interface !== proxyClass.interfaceName) {
      throw new TypeError(`cannot bind ${global.interface} global as ${proxyClass.interfaceName}`);
    }
    if (!Number.isInteger(version) || version < 1 || version > proxyClass.version) {
      throw new RangeError(
        `${proxyClass.interfaceName}: version ${version} outside 1..${proxyClass.version}`,
      );
    }
    return this.proxy.bind(global.name, proxyClass, Math.min(version, global.version));
  }

  /** Binds the first global of the class's interface; throws when there is none. */
  bindFirst<P extends ClientProxy>(proxyClass: ProxyClass<P>, version = proxyClass.version): P {
    const global = this.find(proxyClass.interfaceName);
    if (!global) throw new Error(`no ${proxyClass.interfaceName} global`);
    return this.bind(global, proxyClass, version);
  }
}
