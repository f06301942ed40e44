/**
 * The typed face of the guestfb native addon (`build/Release/guestfb.node`).
 *
 * Rules (see shared design): native code does syscalls and libwayland calls, TypeScript does
 * logic. Every fd has one owner; each function's doc says whether it borrows or takes an fd.
 * Errors from system calls are `SystemError`s with `code`, `errno` and `syscall`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** An Error raised by a failed system call, shaped like Node's own. */
export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export function isSystemError(error: unknown): error is SystemError {
  return error instanceof Error && typeof (error as Partial<SystemError>).syscall === 'string';
}

// ---------------------------------------------------------------------------------------------
// Interface tables
// ---------------------------------------------------------------------------------------------

/** One request or event, as the scanner reads it from protocol XML. */
export interface MessageSpec {
  name: string;
  /** libwayland signature: optional `since` digits, then `i u f s o n a h`, `?` before nullable. */
  signature: string;
  /**
   * One entry per signature letter (not per XML arg: an untyped new_id is `sun` and takes three
   * entries): the interface name for `o`/`n` arguments that name one, else null.
   */
  types: (string | null)[];
}

export interface InterfaceSpec {
  name: string;
  version: number;
  requests: MessageSpec[];
  events: MessageSpec[];
}

// ---------------------------------------------------------------------------------------------
// Wayland argument values, as they cross the boundary
// ---------------------------------------------------------------------------------------------

/**
 * Decoded argument values by signature letter:
 * - `i`, `u`: number; `f`: number (converted from/to 24.8 fixed point)
 * - `s`: string | null
 * - `o`: the wrapper object (NativeResource / NativeProxy) | null. Incoming objects that the
 *   binding did not create (libwayland's own wl_registry/wl_callback resources) decode as null.
 *   Outgoing: a live wrapper of the same client/connection, of the interface the message names.
 * - `n`: server requests: the new object id (number); for an untyped new_id (wl_registry.bind)
 *   three values appear instead: interface name (string), version (number), id (number).
 *   Server events: a NativeResource created with id 0. Client requests: pass null (the new proxy
 *   is returned by `marshal`). Client events: a new NativeProxy (its interface from the message).
 * - `a`: Uint8Array (copied); outgoing, any TypedArray or DataView (its bytes are copied)
 * - `i`/`u` outgoing must be integers in int32/uint32 range (RangeError), `f` finite with
 *   |value| < 2^23; strings must not contain NUL
 * - `h`: fd number. Received fds are owned by the receiver (JS must close them). Fds passed to
 *   postEvent/marshal are borrowed (libwayland dups them).
 */
export type WireValue = number | string | null | Uint8Array | NativeResource | NativeProxy;

// ---------------------------------------------------------------------------------------------
// Server side (libwayland-server)
// ---------------------------------------------------------------------------------------------

export interface ClientCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * A wl_display. Its event loop is polled from Node's libuv loop; clients are flushed after each
 * dispatch and once per loop iteration (before libuv waits), so events posted from timers or
 * promises go out without an explicit flush. A live display keeps the process running; destroy()
 * lets it exit. destroy() called from inside a callback takes effect when that callback returns.
 * After destroy, creating methods (addSocket, createClient, createGlobal, nextSerial) throw an
 * Error with code ERR_WAYLAND_DESTROYED; flushClients and destroy do nothing.
 */
export interface NativeServerDisplay {
  /** wl_display_add_socket (name given) or wl_display_add_socket_auto; returns the name. */
  addSocket(name?: string): string;
  /** wl_client_create on a connected socket. Takes ownership of `fd` (closed on failure). */
  createClient(fd: number): NativeClient;
  /**
   * wl_global_create; `bind` runs when a client binds it and must create the resource with
   * `client.createResource(interfaceName, version, id, ...)`. If `bind` throws, the client gets an
   * implementation error and the error goes to onError. `version` must be 1..interface version.
   */
  createGlobal(
    interfaceName: string,
    version: number,
    bind: (client: NativeClient, version: number, id: number) => void,
  ): NativeGlobal;
  /**
   * Reports exceptions thrown by JS callbacks (request dispatchers and bind handlers: after the
   * client got an implementation error; destroy listeners: the client is null). Without a
   * handler they are printed to stderr. Pass null to remove the handler.
   */
  onError(handler: ((error: unknown, client: NativeClient | null) => void) | null): void;
  /** wl_display_flush_clients, now. */
  flushClients(): void;
  /** Current serial / next serial (wl_display_get_serial / wl_display_next_serial). */
  nextSerial(): number;
  /** wl_display_destroy; destroys every client and resource (their destroy callbacks run). */
  destroy(): void;
  readonly destroyed: boolean;
}

export interface NativeGlobal {
  /** The global's name in wl_registry.global (libwayland numbers them 1, 2, ... per display). */
  readonly name: number;
  /** wl_global_remove: hides it from new binds, announcing global_remove; keep until destroy. */
  remove(): void;
  destroy(): void;
}

/**
 * A wl_client. After it is destroyed: createResource, credentials and onDestroy throw an Error
 * with code ERR_WAYLAND_DESTROYED; getObject returns null; the rest do nothing.
 */
export interface NativeClient {
  /** A stable per-display number for logging. */
  readonly id: number;
  credentials(): ClientCredentials;
  /**
   * wl_resource_create + dispatcher. `id` 0 allocates a server-side id (for events' new_id).
   * `version` must be 1..interface version. `dispatch` runs with the resource as `this`; if it
   * throws, the client gets an implementation error (code 3) and the error goes to onError.
   * Fails with an ErrnoError (syscall wl_resource_create) when the id is in use.
   */
  createResource(
    interfaceName: string,
    version: number,
    id: number,
    dispatch: (opcode: number, args: WireValue[]) => void,
    onDestroy?: () => void,
  ): NativeResource;
  /** wl_client_post_implementation_error. */
  postImplementationError(message: string): void;
  /** wl_client_post_no_memory. */
  postNoMemory(): void;
  /** Runs once when the client is destroyed (disconnect, error or destroy()), before its
   * resources are destroyed. */
  onDestroy(listener: () => void): void;
  /** Looks up a live resource of this client by object id (null for ids libwayland itself
   * owns, such as wl_display and wl_registry objects). */
  getObject(id: number): NativeResource | null;
  flush(): void;
  destroy(): void;
  readonly destroyed: boolean;
}

export interface NativeResource {
  readonly id: number;
  readonly version: number;
  readonly interfaceName: string;
  readonly client: NativeClient;
  /** False after the resource was destroyed (by request, client exit or destroy()). Inert then:
   * postEvent and postError do nothing. */
  readonly alive: boolean;
  /**
   * wl_resource_post_event_array. Checks arg count and types against the event signature
   * (TypeError; out-of-range integers: RangeError), the opcode (RangeError) and the event's since
   * version against the resource's version (Error, code ERR_WAYLAND_VERSION). `o`/`n` arguments
   * must be live resources of the same client, of the interface the message names.
   */
  postEvent(opcode: number, args: WireValue[]): void;
  /** wl_resource_post_error. */
  postError(code: number, message: string): void;
  /** wl_resource_destroy. onDestroy runs (with alive already false). No-op when dead. */
  destroy(): void;
  /** Free slot for the JS layer: the typed wrapper (generated class) that owns this resource. */
  owner: unknown;
}

// ---------------------------------------------------------------------------------------------
// Client side (libwayland-client)
// ---------------------------------------------------------------------------------------------

export interface ProtocolErrorInfo {
  /**
   * errno from wl_display_get_error. For a wl_display.error event libwayland maps wl_display's own
   * codes INVALID_OBJECT/INVALID_METHOD to EINVAL, NO_MEMORY to ENOMEM and everything else
   * (IMPLEMENTATION, errors on other objects) to EPROTO; a hang-up gives EPIPE or the socket error.
   */
  errno: number;
  /** Present when a wl_display.error event arrived: wl_display_get_protocol_error. */
  code?: number;
  interfaceName?: string;
  objectId?: number;
  /** The error message libwayland logged for it (captured via its log handler), if any. */
  message?: string;
}

/**
 * A wl_display client connection, read and flushed from Node's loop, never blocking: reads use
 * prepare_read/read_events/dispatch_pending when the socket is readable; requests are flushed once
 * per loop iteration (and by flush()), polling for writable while the socket is full. A live
 * connection keeps the process running; after disconnect() or a fatal error it does not.
 */
export interface NativeClientConnection {
  /** The wl_display proxy (object id 1, version 1). Requests: sync (0), get_registry (1).
   * libwayland handles its events (error, delete_id): a dispatcher set on it is never called
   * (errors arrive through onError), and destroy() on it throws a TypeError. */
  readonly display: NativeProxy;
  /** Called once when the connection fails (protocol error, hang-up); polling stops then. Call
   * disconnect() afterwards to free it. Without a handler the failure is printed to stderr. */
  onError(handler: ((info: ProtocolErrorInfo) => void) | null): void;
  /** Reports exceptions thrown by event listeners (stderr without a handler). The connection
   * lives on. */
  onListenerError(handler: ((error: unknown) => void) | null): void;
  flush(): void;
  /** Destroys every proxy (wrappers become inert) and calls wl_display_disconnect. Idempotent;
   * called from inside an event listener it takes effect when dispatching returns. */
  disconnect(): void;
  /** False after disconnect() or a fatal error. */
  readonly connected: boolean;
  /**
   * True while the last flush found the socket full (the peer is not reading). libwayland-client
   * 1.21 treats a full socket while it queues a request as fatal, so callers hold back traffic
   * that can wait (cursor updates) until this is false again.
   */
  readonly writeBlocked: boolean;
}

export interface NativeProxy {
  readonly id: number;
  readonly version: number;
  readonly interfaceName: string;
  readonly alive: boolean;
  /**
   * wl_proxy_marshal_array_flags. For a request with a new_id, pass null in its slot (or for an
   * untyped new_id, the interface name, version and null); the new proxy is returned.
   * `newInterface` defaults to the message's type (or, untyped, the interface name argument, which
   * it must match); `newVersion` defaults to this proxy's version (untyped: the version argument,
   * which it must match). On the wl_display proxy, 'wl_callback' and 'wl_registry' work before
   * they are defined (libwayland's own tables serve). `destroy` marks a destructor request (the proxy is destroyed after).
   * Checks like postEvent (TypeError/RangeError, ERR_WAYLAND_VERSION). On a dead proxy: requests
   * without a new_id do nothing; requests with one throw ERR_WAYLAND_DESTROYED. After a fatal
   * connection error libwayland drops requests silently (new proxies are still returned).
   * `dispatch`, when given, becomes the new proxy's dispatcher (as setDispatcher, in the same call).
   */
  marshal(
    opcode: number,
    args: WireValue[],
    newInterface?: string,
    newVersion?: number,
    destroy?: boolean,
    dispatch?: (opcode: number, args: WireValue[]) => void,
  ): NativeProxy | undefined;
  /**
   * A wl_surface's (version 4 or later) whole frame in one call: attach(buffer, 0, 0),
   * damage_buffer for each of the first `count` boxes (x0, y0, x1, y1 in buffer coordinates,
   * ends exclusive; at most 64), commit. TypeError on another interface, a wl_buffer of another
   * connection or anything but an Int32Array; RangeError when `count` exceeds the boxes or a box
   * ends before it starts. Nothing is sent on a dead proxy.
   */
  commitFrame(buffer: NativeProxy | null, boxes: Int32Array, count: number): void;
  /** Sets (or replaces) the event dispatcher; events arrive decoded, with the proxy as `this`.
   * Throws ERR_WAYLAND_DESTROYED on a dead proxy. */
  setDispatcher(dispatch: (opcode: number, args: WireValue[]) => void): void;
  /** wl_proxy_destroy (no request sent). No-op when dead. */
  destroy(): void;
  /** Free slot for the JS layer's typed wrapper. */
  owner: unknown;
}

// ---------------------------------------------------------------------------------------------
// The addon
// ---------------------------------------------------------------------------------------------

export interface NativeAddon {
  /**
   * Builds wl_interface/wl_message tables (kept for the life of the process, shared by all
   * threads). May be called repeatedly; type references are resolved by name across all calls
   * (a referenced name may be defined later). Defining a name again with an identical spec does
   * nothing; with a different spec it throws (code ERR_WAYLAND_INTERFACE_REDEFINED). A call that
   * throws defines nothing. Interfaces must be defined before use (else
   * ERR_WAYLAND_UNKNOWN_INTERFACE).
   */
  defineInterfaces(specs: InterfaceSpec[]): void;
  /** True when `name` was defined (a name only referenced so far is not). */
  hasInterface(name: string): boolean;

  createServerDisplay(): NativeServerDisplay;

  /** wl_display_connect(name) (name undefined → WAYLAND_DISPLAY / WAYLAND_SOCKET rules).
   * Fails with an ErrnoError, syscall "wl_display_connect" (e.g. ENOENT). */
  connect(name?: string): NativeClientConnection;
  /** wl_display_connect_to_fd. Takes ownership of `fd` (closed on failure too). */
  connectToFd(fd: number): NativeClientConnection;

  // fd, memfd, udmabuf, dma-buf, mmap, eventfd, unix sockets: see FdAddon (native/src/fd.cc)
  // DRM/KMS: see DrmAddon (native/src/drm.cc)
}

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** Finds the addon from the source tree or from dist/ (compiled output sits one level deeper). */
function loadAddon(): NativeAddon {
  const candidates = [
    path.resolve(here, '../build/Release/guestfb.node'),
    path.resolve(here, '../../build/Release/guestfb.node'),
  ];
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      return require(candidate) as NativeAddon;
    } catch (error) {
      lastError = error;
      if ((error as { code?: string }).code !== 'MODULE_NOT_FOUND') throw error;
    }
  }
  throw new Error(`guestfb native addon not built (run \`npm run build\`): ${String(lastError)}`);
}

export const native: NativeAddon = loadAddon();
