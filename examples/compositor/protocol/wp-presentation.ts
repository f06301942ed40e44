/** wp_presentation: CLOCK_MONOTONIC timestamps of the render tick that showed a commit. */
import { WpPresentationResource } from '../../../build/protocols/presentation_time.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { SurfaceObject } from './wl-surface.js';
import { PresentationFeedbackObject } from './wp-presentation-feedback.js';

export const WP_PRESENTATION_VERSION = 1;
/** CLOCK_MONOTONIC: Node's process.hrtime is read from it. */
export const CLOCK_MONOTONIC = 1;

export function createPresentationGlobal(context: ServerContext): Global {
  return WpPresentationResource.global(context.display, WP_PRESENTATION_VERSION, (resource) => {
    context.noteClient(resource.client);
    resource.sendClockId(CLOCK_MONOTONIC);
    return {
      feedback(presentation, surfaceResource, callback) {
        const surface = SurfaceObject.require(surfaceResource).surface;
        surface.presentationFeedback(
          new PresentationFeedbackObject(
            context,
            presentation.client,
            presentation.version,
            callback,
          ),
        );
      },
    };
  });
}
