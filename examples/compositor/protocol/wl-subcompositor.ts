/** wl_subcompositor: turns surfaces into subsurfaces of other surfaces. */
import { WlSubcompositorError, WlSubcompositorResource } from '../../../build/protocols/wayland.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { SubsurfaceObject } from './wl-subsurface.js';
import { SurfaceObject } from './wl-surface.js';

export const WL_SUBCOMPOSITOR_VERSION = 1;

export function createSubcompositorGlobal(context: ServerContext): Global {
  return WlSubcompositorResource.global(context.display, WL_SUBCOMPOSITOR_VERSION, (resource) => {
    context.noteClient(resource.client);
    return {
      getSubsurface(subcompositor, id, surfaceResource, parentResource) {
        const surface = SurfaceObject.require(surfaceResource).surface;
        const parent = SurfaceObject.require(parentResource).surface;
        if (surface.role !== null) {
          subcompositor.postError(
            WlSubcompositorError.bad_surface,
            `wl_surface@${surfaceResource.id} already has the ${surface.role} role`,
          );
          return;
        }
        if (parent.isSelfOrAncestor(surface)) {
          subcompositor.postError(
            WlSubcompositorError.bad_surface,
            `wl_surface@${parentResource.id} cannot be the parent of itself or its ancestor`,
          );
          return;
        }
        new SubsurfaceObject(
          context,
          subcompositor.client,
          subcompositor.version,
          id,
          surface,
          parent,
        );
      },
    };
  });
}
