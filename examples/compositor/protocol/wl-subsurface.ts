/** wl_subsurface: position, stacking and sync mode of a surface inside its parent. */
import type { NativeClient } from '../../../native/index.js';
import {
  WlSubsurfaceError,
  WlSubsurfaceResource,
  type WlSubsurfaceRequests,
  type WlSurfaceResource,
} from '../../../build/protocols/wayland.js';
import type { Surface, SubsurfaceLink } from '../core/surface.js';
import type { ServerContext } from './context.js';
import { SurfaceObject } from './wl-surface.js';

export class SubsurfaceObject implements WlSubsurfaceRequests {
  readonly resource: WlSubsurfaceResource;
  private link: SubsurfaceLink | null;

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
    private readonly surface: Surface,
    private readonly parent: Surface,
  ) {
    this.resource = WlSubsurfaceResource.create(client, version, id, this);
    surface.role = 'wl_subsurface';
    surface.roleData = this;
    this.link = parent.addChild(surface);
    this.resource.onDestroy(() => this.unlink());
  }

  /** The subsurface goes away with its resource (or its surface or parent). */
  private unlink(): void {
    if (!this.link) return;
    this.link = null;
    if (!this.parent.destroyed) this.parent.removeChild(this.surface);
    if (this.surface.roleData === this) this.surface.roleData = null;
    this.context.scene.treeChanged(this.parent);
  }

  private liveLink(): SubsurfaceLink | null {
    if (this.link && (this.surface.destroyed || this.parent.destroyed)) this.unlink();
    return this.link;
  }

  setPosition(_resource: WlSubsurfaceResource, x: number, y: number): void {
    const link = this.liveLink();
    if (!link) return;
    link.pendingX = x;
    link.pendingY = y;
  }

  placeAbove(resource: WlSubsurfaceResource, sibling: WlSurfaceResource): void {
    this.place(resource, sibling, true);
  }

  placeBelow(resource: WlSubsurfaceResource, sibling: WlSurfaceResource): void {
    this.place(resource, sibling, false);
  }

  private place(resource: WlSubsurfaceResource, sibling: WlSurfaceResource, above: boolean): void {
    if (!this.liveLink()) return;
    const target = SurfaceObject.require(sibling).surface;
    if (target === this.surface || !this.parent.restack(this.surface, target, above)) {
      resource.postError(
        WlSubsurfaceError.bad_surface,
        `wl_surface@${sibling.id} is neither the parent nor a sibling`,
      );
    }
  }

  setSync(): void {
    const link = this.liveLink();
    if (link) link.synchronized = true;
  }

  setDesync(): void {
    const link = this.liveLink();
    if (!link) return;
    link.synchronized = false;
    // Cached state is applied by the next commit of this surface (core/surface.ts).
  }
}
