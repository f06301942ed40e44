/**
 * Base class of the generated server-side resource classes (`WlSurfaceResource`, ...).
 *
 * A resource wraps one NativeResource (a wl_resource) and the handler object the compositor gave
 * for its requests. The generated subclass decodes each request and calls the handler; object
 * arguments arrive as the typed wrappers of the resources they name. Event senders are generated
 * too; they return false (and send nothing) when the resource is gone or its version is older
 * than the event's `since`.
 */
import type { NativeClient, NativeResource, WireValue } from '../../native/index.js';
import { ensureInterfacesDefined } from './interfaces.js';

/** Checks a version for a new resource of an interface that supports up to `max`. */
export function checkVersion(interfaceName: string, version: number, max: number): void {
  if (!Number.isInteger(version) || version < 1 || version > max) {
    throw new RangeError(`${interfaceName}: version ${version} outside 1..${max}`);
  }
}

export abstract class Resource {
  /** The wl_resource. Inert (alive false) after destroy. */
  readonly native: NativeResource;
  readonly #destroyListeners: (() => void)[] = [];

  /**
   * Creates the wl_resource. `id` is the client's new_id, or 0 for a server-allocated id (an
   * object sent in an event's new_id argument). `version` must lie in 1..maxVersion, the
   * interface's version in the XML (a RangeError otherwise).
   */
  protected constructor(
    client: NativeClient,
    interfaceName: string,
    maxVersion: number,
    version: number,
    id: number,
  ) {
    checkVersion(interfaceName, version, maxVersion);
    ensureInterfacesDefined();
    this.native = client.createResource(
      interfaceName,
      version,
      id,
      (opcode, args) => this.dispatchRequest(opcode, args),
      () => this.#runDestroyListeners(),
    );
    this.native.owner = this;
  }

  get id(): number {
    return this.native.id;
  }

  get version(): number {
    return this.native.version;
  }

  get interfaceName(): string {
    return this.native.interfaceName;
  }

  get client(): NativeClient {
    return this.native.client;
  }

  /** False once the resource is destroyed (by request, by the client leaving, or destroy()). */
  get alive(): boolean {
    return this.native.alive;
  }

  /** wl_resource_post_error: a fatal protocol error for the client. No-op when not alive. */
  postError(code: number, message: string): void {
    if (this.alive) this.native.postError(code, message);
  }

  /** wl_resource_destroy; destroy listeners run. No-op when already destroyed. */
  destroy(): void {
    if (this.alive) this.native.destroy();
  }

  /** Runs `listener` once when the resource is destroyed, for whatever reason. */
  onDestroy(listener: () => void): void {
    this.#destroyListeners.push(listener);
  }

  /** Throws when an object passed to an event belongs to another client. */
  protected sameClient(other: Resource | null): void {
    // Compared by identity and by id, whichever the addon keeps stable.
    if (other !== null && other.client !== this.client && other.client.id !== this.client.id) {
      throw new Error(
        `${other.interfaceName}@${other.id} belongs to another client than ${this.interfaceName}@${this.id}`,
      );
    }
  }

  /** Decodes and dispatches one request; generated per interface. */
  protected dispatchRequest(opcode: number, _args: WireValue[]): void {
    throw new Error(`${this.interfaceName} has no request ${opcode}`);
  }

  #runDestroyListeners(): void {
    const listeners = this.#destroyListeners.splice(0);
    let firstError: unknown = null;
    for (const listener of listeners) {
      try {
        listener();
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError !== null) throw firstError;
  }
}
