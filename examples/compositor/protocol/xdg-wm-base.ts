/**
 * xdg_wm_base: the shell global. Pings each client once it binds (and on demand) and logs the
 * round trip; creates xdg_surfaces and (inert) positioners.
 */
import {
  XdgPositionerResource,
  XdgWmBaseError,
  XdgWmBaseResource,
} from '../../../build/protocols/xdg_shell.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { describeClient } from './context.js';
import { XdgSurfaceObject } from './xdg-surface.js';
import { SurfaceObject } from './wl-surface.js';

/**
 * Version 4: Debian 12's weston-presentation-shm binds whatever version is offered but has no
 * listener for v5's wm_capabilities (libwayland aborts it), and nothing here needs v5.
 */
export const XDG_WM_BASE_VERSION = 4;

export function createXdgWmBaseGlobal(context: ServerContext): Global {
  return XdgWmBaseResource.global(context.display, XDG_WM_BASE_VERSION, (resource) => {
    context.noteClient(resource.client);
    const pings = new Map<number, bigint>();
    const surfaces = new Set<XdgSurfaceObject>();
    const ping = (): void => {
      const serial = context.display.nextSerial();
      pings.set(serial, process.hrtime.bigint());
      resource.sendPing(serial);
    };
    ping();
    return {
      destroy(base) {
        if ([...surfaces].some((surface) => surface.resource.alive)) {
          base.postError(
            XdgWmBaseError.defunct_surfaces,
            'xdg_wm_base destroyed before its surfaces',
          );
        }
      },
      createPositioner(base, id) {
        // Popups are not placed by this compositor; the positioner only has to exist.
        XdgPositionerResource.create(base.client, base.version, id, {
          setSize() {},
          setAnchorRect() {},
          setAnchor() {},
          setGravity() {},
          setConstraintAdjustment() {},
          setOffset() {},
          setReactive() {},
          setParentSize() {},
          setParentConfigure() {},
        });
      },
      getXdgSurface(base, id, surfaceResource) {
        const surface = SurfaceObject.require(surfaceResource).surface;
        if (
          surface.role !== null &&
          surface.role !== 'xdg_toplevel' &&
          surface.role !== 'xdg_popup'
        ) {
          base.postError(
            XdgWmBaseError.role,
            `wl_surface@${surfaceResource.id} has the ${surface.role} role`,
          );
          return;
        }
        if (surface.roleData instanceof XdgSurfaceObject && surface.roleData.resource.alive) {
          base.postError(
            XdgWmBaseError.role,
            `wl_surface@${surfaceResource.id} already has an xdg_surface`,
          );
          return;
        }
        if (surface.content !== null) {
          base.postError(
            XdgWmBaseError.invalid_surface_state,
            `wl_surface@${surfaceResource.id} already has a buffer`,
          );
          return;
        }
        const xdgSurface = new XdgSurfaceObject(context, base.client, base.version, id, surface);
        surfaces.add(xdgSurface);
        xdgSurface.resource.onDestroy(() => surfaces.delete(xdgSurface));
      },
      pong(_base, serial) {
        const sent = pings.get(serial);
        if (sent === undefined) return;
        pings.delete(serial);
        const ms = Number(process.hrtime.bigint() - sent) / 1e6;
        context.log(`${describeClient(resource.client)} answered ping in ${ms.toFixed(1)} ms`);
      },
    };
  });
}
