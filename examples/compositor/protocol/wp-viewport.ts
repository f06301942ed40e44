/** wp_viewport: crop (source) and scale (destination) of one surface, double-buffered. */
import type { NativeClient } from '../../../native/index.js';
import {
  WpViewportError,
  WpViewportResource,
  type WpViewportRequests,
} from '../../../build/protocols/viewporter.js';
import type { SurfaceObject } from './wl-surface.js';

export class ViewportObject implements WpViewportRequests {
  readonly resource: WpViewportResource;

  constructor(
    client: NativeClient,
    version: number,
    id: number,
    private readonly surface: SurfaceObject,
  ) {
    this.resource = WpViewportResource.create(client, version, id, this);
    surface.viewport = this;
    this.resource.onDestroy(() => {
      if (surface.viewport !== this) return;
      surface.viewport = null;
      if (!surface.surface.destroyed) {
        surface.surface.setViewportSource(null);
        surface.surface.setViewportDestination(null);
      }
    });
  }

  postError(code: number, message: string): void {
    this.resource.postError(code, message);
  }

  private surfaceGone(resource: WpViewportResource): boolean {
    if (!this.surface.surface.destroyed) return false;
    resource.postError(WpViewportError.no_surface, 'the wl_surface was destroyed');
    return true;
  }

  setSource(
    resource: WpViewportResource,
    x: number,
    y: number,
    width: number,
    height: number,
  ): void {
    if (this.surfaceGone(resource)) return;
    if (x === -1 && y === -1 && width === -1 && height === -1) {
      this.surface.surface.setViewportSource(null);
      return;
    }
    if (!(x >= 0 && y >= 0 && width > 0 && height > 0)) {
      resource.postError(WpViewportError.bad_value, `invalid source ${x},${y} ${width}x${height}`);
      return;
    }
    this.surface.surface.setViewportSource({ x, y, width, height });
  }

  setDestination(resource: WpViewportResource, width: number, height: number): void {
    if (this.surfaceGone(resource)) return;
    if (width === -1 && height === -1) {
      this.surface.surface.setViewportDestination(null);
      return;
    }
    if (!(width > 0 && height > 0)) {
      resource.postError(WpViewportError.bad_value, `invalid destination ${width}x${height}`);
      return;
    }
    this.surface.surface.setViewportDestination({ width, height });
  }
}
