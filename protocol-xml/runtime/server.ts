/**
 * The server side of the runtime: a Display wrapper around the addon's wl_display, and the
 * globals created on it. Generated `XResource.global(display, version, onBind)` builds on
 * `Display.createGlobal`.
 */
import {
  native,
  type NativeClient,
  type NativeGlobal,
  type NativeServerDisplay,
} from '../../native/index.js';
import { ensureInterfacesDefined } from './interfaces.js';
import { checkVersion } from './resource.js';

/** One global on a Display. */
export class Global {
  readonly interfaceName: string;
  readonly version: number;
  readonly native: NativeGlobal;
  readonly #display: Display;
  #removed = false;
  #destroyed = false;

  constructor(
    display: Display,
    interfaceName: string,
    version: number,
    nativeGlobal: NativeGlobal,
  ) {
    this.#display = display;
    this.interfaceName = interfaceName;
    this.version = version;
    this.native = nativeGlobal;
  }

  /** The global's name as clients see it in wl_registry.global. */
  get name(): number {
    return this.native.name;
  }

  get removed(): boolean {
    return this.#removed;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Announces global_remove and refuses new binds; the global stays until destroy() (give
   * clients time to stop binding it, as wl_global_remove intends).
   */
  remove(): void {
    if (this.#removed || this.#destroyed) return;
    this.#removed = true;
    this.native.remove();
  }

  /** wl_global_destroy. Existing resources stay. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#display.forget(this);
    if (!this.#display.destroyed) this.native.destroy();
  }
}

/** A Wayland server display: sockets, clients and globals. */
export class Display {
  readonly native: NativeServerDisplay;
  readonly #globals = new Set<Global>();

  constructor(nativeDisplay: NativeServerDisplay) {
    this.native = nativeDisplay;
  }

  /** A new wl_display, polled from Node's loop. */
  static create(): Display {
    return new Display(native.createServerDisplay());
  }

  /** Listens on a socket in XDG_RUNTIME_DIR (a free wayland-N when no name); returns the name. */
  addSocket(name?: string): string {
    return this.native.addSocket(name);
  }

  /** A client on a connected socket. Takes ownership of `fd`. */
  createClient(fd: number): NativeClient {
    return this.native.createClient(fd);
  }

  /**
   * wl_global_create for an interface the generated code registered. `version` (the highest the
   * compositor offers) must lie in 1..maxVersion. `bind` runs for each wl_registry.bind with the
   * version the client asked for.
   */
  createGlobal(
    interfaceName: string,
    version: number,
    maxVersion: number,
    bind: (client: NativeClient, version: number, id: number) => void,
  ): Global {
    checkVersion(interfaceName, version, maxVersion);
    if (this.destroyed) throw new Error('display was destroyed');
    ensureInterfacesDefined();
    const global = new Global(
      this,
      interfaceName,
      version,
      this.native.createGlobal(interfaceName, version, bind),
    );
    this.#globals.add(global);
    return global;
  }

  /** The globals created here and not destroyed. */
  get globals(): Global[] {
    return [...this.#globals];
  }

  /** @internal Called by Global.destroy. */
  forget(global: Global): void {
    this.#globals.delete(global);
  }

  /** Exceptions thrown by request handlers and bind callbacks (after the client got an
   * implementation error). */
  onError(handler: (error: unknown, client: NativeClient | null) => void): void {
    this.native.onError(handler);
  }

  nextSerial(): number {
    return this.native.nextSerial();
  }

  flushClients(): void {
    this.native.flushClients();
  }

  get destroyed(): boolean {
    return this.native.destroyed;
  }

  /** Destroys every client, resource and global. */
  destroy(): void {
    if (this.destroyed) return;
    this.native.destroy();
    for (const global of this.#globals) global.destroy();
    this.#globals.clear();
  }
}
