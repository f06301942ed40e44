/**
 * Base class of the generated client-side proxy classes (`WlSurfaceProxy`, ...).
 *
 * A proxy wraps one NativeProxy (a wl_proxy). Generated request methods marshal typed arguments
 * (a request with a typed new_id returns the new proxy; a destructor request destroys this one;
 * a request newer than the proxy's version throws; on a dead proxy a request without a new_id
 * does nothing). Events go to one listener object per proxy
 * (`setListener`), like libwayland's wl_proxy_add_listener: fds received in an event belong to
 * the listener method that receives them, and are closed here when no method handles the event.
 */
import type { NativeProxy, WireValue } from '../../native/index.js';
import { fd } from '../../native/fd.js';
import { ensureInterfacesDefined } from './interfaces.js';

/** What `Registry.bind` and untyped new_id requests need from a generated proxy class. */
export interface ProxyClass<P extends ClientProxy> {
  new (native: NativeProxy): P;
  readonly interfaceName: string;
  /** The interface version in the XML: the highest version this class can speak. */
  readonly version: number;
}

export abstract class ClientProxy {
  /** The wl_proxy. Inert (alive false) after destruction. */
  readonly native: NativeProxy;

  /** Wraps a NativeProxy and takes over its event dispatch. */
  constructor(native: NativeProxy) {
    this.native = native;
    // A proxy made by marshalConstructor has its dispatcher already (no call into the addon).
    const dispatching = native.owner === DISPATCHER_SET;
    native.owner = this;
    // libwayland itself handles wl_display's events (error, delete_id): the display wrapper only
    // sends requests, and the addon refuses a dispatcher on it.
    if (!dispatching && !(this.id === 1 && this.interfaceName === 'wl_display')) {
      native.setDispatcher(dispatchToOwner);
    }
  }

  // id, version and interface never change: read from the addon once (every request checks the
  // version, and each read is a call into the addon).
  #id = -1;
  #version = -1;
  #interfaceName: string | null = null;

  get id(): number {
    if (this.#id < 0) this.#id = this.native.id;
    return this.#id;
  }

  get version(): number {
    if (this.#version < 0) this.#version = this.native.version;
    return this.#version;
  }

  get interfaceName(): string {
    this.#interfaceName ??= this.native.interfaceName;
    return this.#interfaceName;
  }

  get alive(): boolean {
    return this.native.alive;
  }

  /**
   * wl_proxy_destroy: forgets the proxy locally without sending anything. Use it for objects the
   * server destroys (wl_callback after `done`) or whose interface has no destructor request; use
   * the destructor request (`destroy()`, `release()`, ...) where one exists.
   */
  destroyProxy(): void {
    this.native.destroy(); // a no-op on a dead proxy
  }

  /**
   * Throws when the proxy's version lacks the request. A dead proxy (destroyed, or its connection
   * gone) is not an error here: the addon drops requests without a new_id on it, as libwayland
   * does after a connection failure, and refuses (throws) ones that would create an object.
   */
  protected checkRequest(name: string, since: number): void {
    if (this.version < since) {
      throw new Error(
        `${this.interfaceName}.${name} needs version ${since}, ${this.interfaceName}@${this.id} has version ${this.version}`,
      );
    }
  }

  /** Marshals a request that creates an object; returns the new NativeProxy. */
  protected marshalConstructor(
    opcode: number,
    args: WireValue[],
    newInterface: string,
    newVersion: number,
    destroy: boolean,
  ): NativeProxy {
    ensureInterfacesDefined();
    const created = this.native.marshal(
      opcode,
      args,
      newInterface,
      newVersion,
      destroy,
      dispatchToOwner,
    );
    if (created === undefined) {
      throw new Error(`${this.interfaceName}: request ${opcode} returned no ${newInterface} proxy`);
    }
    created.owner = DISPATCHER_SET;
    return created;
  }

  /** Marshals a request that creates no object. */
  protected marshal(opcode: number, args: WireValue[], destroy: boolean): void {
    this.native.marshal(opcode, args, undefined, undefined, destroy);
  }

  /** Decodes and dispatches one event; generated per interface. */
  protected dispatchEvent(opcode: number, _args: WireValue[]): void {
    throw new Error(`${this.interfaceName} has no event ${opcode}`);
  }
}

/** `NativeProxy.owner` between marshalConstructor and the wrapper's constructor. */
const DISPATCHER_SET = Symbol('dispatcher set');

/**
 * The dispatcher of every proxy: the addon calls it with the NativeProxy as `this`, so one shared
 * function serves all of them (no closure per proxy; a frame callback is a new proxy per frame).
 */
function dispatchToOwner(this: NativeProxy, opcode: number, args: WireValue[]): void {
  (this.owner as { dispatchEvent(opcode: number, args: WireValue[]): void }).dispatchEvent(
    opcode,
    args,
  );
}

/** The alias some code imported before the rename (it shadowed the global Proxy). */
export type Proxy = ClientProxy;

/** Closes the fds of an event nobody listened to (they were handed to us by libwayland). */
export function closeUnhandledFds(...fds: WireValue[]): void {
  for (const value of fds) {
    if (typeof value === 'number' && value >= 0) fd.close(value);
  }
}
