/**
 * What every protocol object of the example compositor shares: the display, the scene, the
 * linux-dmabuf formats and compiled feedback, the keymap file, per-output wl_output resources,
 * and the log.
 */
import type { NativeClient } from '../../../native/index.js';
import type { Display } from '../../../protocol-xml/runtime/server.js';
import type { WlOutputResource } from '../../../build/protocols/wayland.js';
import type { Scene } from '../core/scene.js';
import type { Seat } from '../core/seat.js';
import type { CompiledFeedback } from '../dmabuf/feedback.js';
import type { FormatModifierSet } from '../dmabuf/formats.js';
import type { fd as fdModule } from '../../../native/fd.js';

export interface ServerContext {
  readonly display: Display;
  readonly scene: Scene;
  readonly fd: typeof fdModule;
  readonly dmabufFormats: FormatModifierSet;
  readonly dmabufFeedback: CompiledFeedback;
  readonly keymap: { fd: number; size: number };
  /** Pointer and keyboard focus and state; wl_seat registers its devices here. */
  readonly seat: Seat;
  /** wl_output resources by output name (for wl_surface.enter and presentation sync_output). */
  readonly outputResources: Map<string, Set<WlOutputResource>>;
  log(message: string): void;
  /** Called with every client that binds a global (the first time), for logging and stats. */
  noteClient(client: NativeClient): void;
}

/** "client 3 (pid 1234)" for logs. */
export function describeClient(client: NativeClient): string {
  try {
    return `client ${client.id} (pid ${client.credentials().pid})`;
  } catch {
    return `client ${client.id}`;
  }
}
