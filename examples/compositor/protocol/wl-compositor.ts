/** wl_compositor: creates surfaces and regions. */
import { WlCompositorResource } from '../../../build/protocols/wayland.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { RegionObject } from './wl-region.js';
import { SurfaceObject } from './wl-surface.js';

export const WL_COMPOSITOR_VERSION = 5;

export function createCompositorGlobal(context: ServerContext): Global {
  return WlCompositorResource.global(context.display, WL_COMPOSITOR_VERSION, (resource) => {
    context.noteClient(resource.client);
    return {
      createSurface(parent, id) {
        new SurfaceObject(context, parent.client, parent.version, id);
      },
      createRegion(parent, id) {
        new RegionObject(parent.client, parent.version, id);
      },
    };
  });
}
