/**
 * The present layer's Wayland connection: the runtime client Connection (non-blocking
 * roundtrips, protocol errors) plus its Registry, with the few helpers the present layer uses.
 * A failure (protocol error, hang-up, a throwing event handler) is reported once via `onError`.
 */
import type { ProtocolErrorInfo } from '../../native/index.js';
import { Connection, type GlobalInfo, type Registry } from '../../protocol-xml/runtime/client.js';
import type { Proxy, ProxyClass } from '../../protocol-xml/runtime/proxy.js';

export type { GlobalInfo } from '../../protocol-xml/runtime/client.js';

export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly info: ProtocolErrorInfo | null,
  ) {
    super(message);
    this.name = 'ConnectionError';
  }
}

export class WaylandClient {
  private error: ConnectionError | null = null;
  private readonly errorHandlers: ((error: ConnectionError) => void)[] = [];
  private closing = false;

  private constructor(
    readonly connection: Connection,
    readonly registry: Registry,
  ) {
    connection.onError((error) => {
      if (!this.closing) this.fail(new ConnectionError(error.message, error.info));
    });
    connection.onListenerError((error) => {
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.fail(new ConnectionError(`a Wayland event handler failed: ${text}`, null));
    });
  }

  private static async start(connection: Connection): Promise<WaylandClient> {
    try {
      const registry = await connection.registry();
      return new WaylandClient(connection, registry);
    } catch (error) {
      connection.disconnect();
      throw error;
    }
  }

  /** Connects to a display name or path (WAYLAND_DISPLAY when undefined); lists the globals. */
  static connect(display?: string): Promise<WaylandClient> {
    return WaylandClient.start(Connection.connect(display));
  }

  /** Connects over an already connected socket (takes the fd); lists the globals. */
  static fromFd(socketFd: number): Promise<WaylandClient> {
    return WaylandClient.start(Connection.connectToFd(socketFd));
  }

  get failed(): ConnectionError | null {
    return this.error;
  }

  onError(handler: (error: ConnectionError) => void): void {
    if (this.error) handler(this.error);
    else this.errorHandlers.push(handler);
  }

  private fail(error: ConnectionError): void {
    if (this.error) return;
    this.error = error;
    for (const handler of this.errorHandlers.splice(0)) handler(error);
  }

  /** Resolves once the compositor processed every request sent so far. */
  roundtrip(): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    return this.connection.roundtrip();
  }

  flush(): void {
    if (this.connection.connected) this.connection.flush();
  }

  /** True while the compositor does not read fast enough (the last flush met a full socket). */
  get writeBlocked(): boolean {
    return this.connection.writeBlocked;
  }

  get globals(): GlobalInfo[] {
    return this.registry.globals;
  }

  /**
   * Binds the first global of `cls`'s interface at min(advertised, wanted), or returns null when
   * the compositor lacks it or offers less than `minVersion`.
   */
  bind<P extends Proxy>(cls: ProxyClass<P>, wanted: number, minVersion = 1): P | null {
    const global = this.registry.find(cls);
    if (!global || global.version < minVersion) return null;
    return this.registry.bind(global, cls, Math.min(wanted, cls.version));
  }

  disconnect(): void {
    this.closing = true;
    this.connection.disconnect();
  }
}
