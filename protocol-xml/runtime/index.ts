/**
 * The runtime the generated protocol modules (build/protocols/*.ts) build on, plus the
 * hand-written entry points: server `Display`/`Global`, client `Connection`/`Registry`.
 * Generated modules import the individual files, never this index (it pulls in the client,
 * which itself imports generated wayland.ts).
 */
export {
  registerInterfaces,
  ensureInterfacesDefined,
  registeredInterfaceNames,
} from './interfaces.js';
export { ownerOf, requireOwner, type ClassOf } from './owner.js';
export { Resource, checkVersion } from './resource.js';
export { Display, Global } from './server.js';
export { ClientProxy, closeUnhandledFds, type ProxyClass } from './proxy.js';
export { Connection, Registry, ProtocolError, type GlobalInfo } from './client.js';
