/** wl_pointer: accepts cursor surfaces (the cursor role); no cursor is drawn headless. */
import type { NativeClient } from '../../../native/index.js';
import {
  WlPointerError,
  WlPointerResource,
  type WlPointerRequests,
  type WlSurfaceResource,
} from '../../../build/protocols/wayland.js';
import { SurfaceObject } from './wl-surface.js';

export class PointerObject implements WlPointerRequests {
  readonly resource: WlPointerResource;

  constructor(client: NativeClient, version: number, id: number) {
    this.resource = WlPointerResource.create(client, version, id, this);
  }

  setCursor(
    resource: WlPointerResource,
    _serial: number,
    surfaceResource: WlSurfaceResource | null,
  ): void {
    if (!surfaceResource) return;
    const surface = SurfaceObject.require(surfaceResource).surface;
    if (surface.role !== null && surface.role !== 'cursor') {
      resource.postError(WlPointerError.role, `wl_surface@${surfaceResource.id} has a role`);
      return;
    }
    surface.role = 'cursor';
  }
}
