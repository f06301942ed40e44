/** wl_output: one global per output with geometry, mode, scale, name and description. */
import { WlOutputResource } from '../../../build/protocols/wayland.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { Output } from '../core/scene.js';
import type { ServerContext } from './context.js';

export const WL_OUTPUT_VERSION = 4;
const MODE_CURRENT_PREFERRED = 0x1 | 0x2;

export function createOutputGlobal(context: ServerContext, output: Output): Global {
  const resources = new Set<WlOutputResource>();
  context.outputResources.set(output.name, resources);
  return WlOutputResource.global(context.display, WL_OUTPUT_VERSION, (resource) => {
    context.noteClient(resource.client);
    resources.add(resource);
    resource.onDestroy(() => resources.delete(resource));
    const { width, height, refreshMhz } = output.config;
    // Physical size unknown (0 mm), subpixel unknown, normal transform.
    resource.sendGeometry(output.x, output.y, 0, 0, 0, 'guestfb', 'headless', 0);
    resource.sendMode(MODE_CURRENT_PREFERRED, width, height, refreshMhz);
    resource.sendScale(1);
    resource.sendName(output.name);
    resource.sendDescription(
      output.config.description ?? `guestfb headless output ${width}x${height}`,
    );
    resource.sendDone();
    return {};
  });
}
