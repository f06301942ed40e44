/** wl_pointer: set_cursor gives the seat the client's cursor image (the cursor role). */
import type { NativeClient } from '../../../native/index.js';
import {
  WlPointerError,
  WlPointerResource,
  type WlPointerRequests,
  type WlSurfaceResource,
} from '../../../build/protocols/wayland.js';
import type { Seat } from '../core/seat.js';
import { SurfaceObject } from './wl-surface.js';

export class PointerObject implements WlPointerRequests {
  readonly resource: WlPointerResource;

  constructor(
    client: NativeClient,
    version: number,
    id: number,
    private readonly seat: Seat,
  ) {
    this.resource = WlPointerResource.create(client, version, id, this);
  }

  setCursor(
    resource: WlPointerResource,
    serial: number,
    surfaceResource: WlSurfaceResource | null,
    hotspotX: number,
    hotspotY: number,
  ): void {
    if (!surfaceResource) {
      this.seat.setCursor(resource, serial, null, 0, 0);
      return;
    }
    const surface = SurfaceObject.require(surfaceResource).surface;
    if (surface.role !== null && surface.role !== 'cursor') {
      resource.postError(WlPointerError.role, `wl_surface@${surfaceResource.id} has a role`);
      return;
    }
    surface.role = 'cursor';
    this.seat.setCursor(resource, serial, surface, hotspotX, hotspotY);
  }
}
