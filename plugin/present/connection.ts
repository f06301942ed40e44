/**
 * A Wayland client connection for the present layer: the display and registry proxies, the
 * globals list, and an async roundtrip. Errors (protocol errors, hang-ups) are reported once
 * through `onError`; after that every pending roundtrip rejects.
 */
import { native, type NativeClientConnection, type ProtocolErrorInfo } from '../../native/index.js';
import type { ProxyClass, Proxy } from '../../protocol-xml/runtime/proxy.js';
import { WlCallbackProxy, WlDisplayProxy, WlRegistryProxy } from '../../build/protocols/index.js';

export interface GlobalInfo {
  name: number;
  interfaceName: string;
  version: number;
}

export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly info: ProtocolErrorInfo | null,
  ) {
    super(message);
  }
}

export function describeProtocolError(info: ProtocolErrorInfo): string {
  if (info.code !== undefined) {
    const where = `${info.interfaceName ?? '?'}@${info.objectId ?? '?'}`;
    return `protocol error ${info.code} on ${where}${info.message ? `: ${info.message}` : ''}`;
  }
  return `connection failed (errno ${info.errno})${info.message ? `: ${info.message}` : ''}`;
}

export class WaylandClient {
  readonly display: WlDisplayProxy;
  readonly registry: WlRegistryProxy;
  readonly globals = new Map<number, GlobalInfo>();
  private error: ConnectionError | null = null;
  private readonly pending = new Set<(error: ConnectionError) => void>();
  private readonly errorHandlers: ((error: ConnectionError) => void)[] = [];
  private readonly globalRemovedHandlers: ((global: GlobalInfo) => void)[] = [];

  /** Takes ownership of the native connection (disconnect() closes it). */
  constructor(readonly connection: NativeClientConnection) {
    this.display = new WlDisplayProxy(connection.display);
    connection.onError((info) => this.fail(new ConnectionError(describeProtocolError(info), info)));
    connection.onListenerError((error) => {
      this.fail(
        new ConnectionError(
          `event handler failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
          null,
        ),
      );
    });
    this.registry = this.display.getRegistry().setListener({
      global: (name, interfaceName, version) => {
        this.globals.set(name, { name, interfaceName, version });
      },
      globalRemove: (name) => {
        const global = this.globals.get(name);
        this.globals.delete(name);
        if (global) for (const handler of this.globalRemovedHandlers) handler(global);
      },
    });
  }

  /** Connects to a display name (or WAYLAND_DISPLAY when undefined) and lists the globals. */
  static async connect(display?: string): Promise<WaylandClient> {
    const client = new WaylandClient(native.connect(display));
    await client.roundtrip();
    return client;
  }

  /** Connects over an already connected socket (takes the fd) and lists the globals. */
  static async fromFd(socketFd: number): Promise<WaylandClient> {
    const client = new WaylandClient(native.connectToFd(socketFd));
    await client.roundtrip();
    return client;
  }

  get failed(): ConnectionError | null {
    return this.error;
  }

  onError(handler: (error: ConnectionError) => void): void {
    this.errorHandlers.push(handler);
  }

  onGlobalRemoved(handler: (global: GlobalInfo) => void): void {
    this.globalRemovedHandlers.push(handler);
  }

  private fail(error: ConnectionError): void {
    if (this.error) return;
    this.error = error;
    for (const reject of [...this.pending]) reject(error);
    this.pending.clear();
    for (const handler of this.errorHandlers) handler(error);
  }

  /** Resolves once the compositor processed every request sent so far (wl_display.sync). */
  roundtrip(): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    return new Promise<void>((resolve, reject) => {
      const onFail = (error: ConnectionError) => reject(error);
      this.pending.add(onFail);
      let callback: WlCallbackProxy;
      try {
        callback = this.display.sync();
      } catch (error) {
        this.pending.delete(onFail);
        reject(error);
        return;
      }
      callback.setListener({
        done: () => {
          callback.destroyProxy();
          this.pending.delete(onFail);
          resolve();
        },
      });
      this.flush();
    });
  }

  flush(): void {
    if (this.connection.connected && !this.error) this.connection.flush();
  }

  /** The first global of an interface, or undefined. */
  find(interfaceName: string): GlobalInfo | undefined {
    for (const global of this.globals.values()) {
      if (global.interfaceName === interfaceName) return global;
    }
    return undefined;
  }

  /**
   * Binds the first global of `cls`'s interface at min(advertised, wanted) or returns null when
   * the compositor lacks it or offers less than `minVersion`.
   */
  bind<P extends Proxy>(cls: ProxyClass<P>, wanted: number, minVersion = 1): P | null {
    const global = this.find(cls.interfaceName);
    if (!global || global.version < minVersion) return null;
    const version = Math.min(global.version, wanted, cls.version);
    return this.registry.bind(global.name, cls, version);
  }

  disconnect(): void {
    if (this.connection.connected) this.connection.disconnect();
  }
}
