/** wp_viewporter: hands out one wp_viewport per surface. */
import { WpViewporterError, WpViewporterResource } from '../../../build/protocols/viewporter.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { SurfaceObject } from './wl-surface.js';
import { ViewportObject } from './wp-viewport.js';

export const WP_VIEWPORTER_VERSION = 1;

export function createViewporterGlobal(context: ServerContext): Global {
  return WpViewporterResource.global(context.display, WP_VIEWPORTER_VERSION, (resource) => {
    context.noteClient(resource.client);
    return {
      getViewport(viewporter, id, surfaceResource) {
        const surface = SurfaceObject.require(surfaceResource);
        if (surface.viewport) {
          viewporter.postError(
            WpViewporterError.viewport_exists,
            `wl_surface@${surfaceResource.id} already has a viewport`,
          );
          return;
        }
        new ViewportObject(viewporter.client, viewporter.version, id, surface);
      },
    };
  });
}
