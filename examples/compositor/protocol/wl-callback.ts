/** wl_callback for wl_surface.frame: one `done`, then the server destroys it. */
import type { NativeClient } from '../../../native/index.js';
import { WlCallbackResource } from '../../../build/protocols/wayland.js';
import type { FrameCallbackSink } from '../core/surface.js';

export class FrameCallback implements FrameCallbackSink {
  private readonly resource: WlCallbackResource;

  constructor(client: NativeClient, id: number) {
    this.resource = WlCallbackResource.create(client, 1, id, {});
  }

  done(timeMs: number): void {
    if (!this.resource.alive) return;
    this.resource.sendDone(timeMs >>> 0);
    this.resource.destroy();
  }
}
