/**
 * wl_surface: the protocol face of core/surface.ts. Validates scale and transform, maps commit
 * errors to protocol errors, and keeps the surface in the scene until the resource goes.
 */
import type { NativeClient } from '../../../native/index.js';
import {
  WlSurfaceError,
  WlSurfaceResource,
  type WlBufferResource,
  type WlRegionResource,
  type WlSurfaceRequests,
} from '../../../build/protocols/wayland.js';
import { WpViewportError } from '../../../build/protocols/viewporter.js';
import { CommitRejected, Surface, SurfaceCommitError } from '../core/surface.js';
import { Region } from '../render/region.js';
import type { ServerContext } from './context.js';
import { BufferObject } from './wl-buffer.js';
import { FrameCallback } from './wl-callback.js';
import { RegionObject } from './wl-region.js';

/** The protocol object of each live surface (the seat finds the resource under the pointer). */
const objects = new WeakMap<Surface, SurfaceObject>();

export class SurfaceObject implements WlSurfaceRequests {
  readonly surface = new Surface();
  readonly resource: WlSurfaceResource;
  opaqueRegion = new Region();
  inputRegion: Region | null = null;
  /** The wp_viewport of this surface (at most one), for its protocol errors. */
  viewport: { postError(code: number, message: string): void } | null = null;
  /** Outputs this surface has entered. */
  readonly enteredOutputs = new Set<string>();

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
  ) {
    this.resource = WlSurfaceResource.create(client, version, id, this);
    objects.set(this.surface, this);
    this.surface.log = (message) => context.log(`wl_surface@${id}: ${message}`);
    context.scene.addSurface(this.surface);
    this.resource.onDestroy(() => {
      context.scene.removeSurface(this.surface);
      this.surface.destroy();
    });
  }

  /** The protocol object of a scene surface (none after its resource is destroyed). */
  static of(surface: Surface): SurfaceObject | null {
    const object = objects.get(surface);
    return object && object.resource.alive ? object : null;
  }

  static from(resource: WlSurfaceResource | null): SurfaceObject | null {
    const handlers = resource?.handlers;
    return handlers instanceof SurfaceObject ? handlers : null;
  }

  static require(resource: WlSurfaceResource): SurfaceObject {
    const object = SurfaceObject.from(resource);
    if (!object) throw new Error(`wl_surface@${resource.id} has no surface object`);
    return object;
  }

  attach(resource: WlSurfaceResource, buffer: WlBufferResource | null, x: number, y: number): void {
    if (resource.version >= 5 && (x !== 0 || y !== 0)) {
      resource.postError(
        WlSurfaceError.invalid_offset,
        'attach with a non-zero offset (use offset)',
      );
      return;
    }
    const object = BufferObject.from(buffer);
    if (buffer && !object) throw new Error(`wl_buffer@${buffer.id} has no buffer object`);
    if (resource.version >= 5) this.surface.attach(object);
    else this.surface.attach(object, x, y);
  }

  offset(_resource: WlSurfaceResource, x: number, y: number): void {
    this.surface.offset(x, y);
  }

  damage(_resource: WlSurfaceResource, x: number, y: number, width: number, height: number): void {
    this.surface.damage(x, y, width, height);
  }

  damageBuffer(
    _resource: WlSurfaceResource,
    x: number,
    y: number,
    width: number,
    height: number,
  ): void {
    this.surface.damageBuffer(x, y, width, height);
  }

  frame(resource: WlSurfaceResource, callback: number): void {
    this.surface.frame(new FrameCallback(resource.client, callback));
  }

  setOpaqueRegion(_resource: WlSurfaceResource, region: WlRegionResource | null): void {
    this.opaqueRegion = RegionObject.from(region)?.region.clone() ?? new Region();
  }

  setInputRegion(_resource: WlSurfaceResource, region: WlRegionResource | null): void {
    this.inputRegion = RegionObject.from(region)?.region.clone() ?? null;
  }

  setBufferTransform(resource: WlSurfaceResource, transform: number): void {
    if (!Number.isInteger(transform) || transform < 0 || transform > 7) {
      resource.postError(WlSurfaceError.invalid_transform, `invalid transform ${transform}`);
      return;
    }
    this.surface.setBufferTransform(transform);
  }

  setBufferScale(resource: WlSurfaceResource, scale: number): void {
    if (!Number.isInteger(scale) || scale < 1) {
      resource.postError(WlSurfaceError.invalid_scale, `invalid scale ${scale}`);
      return;
    }
    this.surface.setBufferScale(scale);
  }

  commit(resource: WlSurfaceResource): void {
    try {
      this.surface.commit();
    } catch (error) {
      if (error instanceof CommitRejected) return;
      if (!(error instanceof SurfaceCommitError)) throw error;
      if (error.kind === 'invalid-size') {
        resource.postError(WlSurfaceError.invalid_size, error.message);
      } else if (this.viewport) {
        const code =
          error.kind === 'viewport-out-of-buffer'
            ? WpViewportError.out_of_buffer
            : WpViewportError.bad_size;
        this.viewport.postError(code, error.message);
      } else {
        resource.postError(WlSurfaceError.invalid_size, error.message);
      }
      return;
    }
    this.updateOutputs();
  }

  /** Sends wl_surface.enter for the output that shows this surface. */
  private updateOutputs(): void {
    const output = this.context.scene.outputOf(this.surface);
    const shown = this.context.scene.positionOf(this.surface) !== null && this.surface.content;
    const wanted = shown ? output.name : null;
    for (const name of [...this.enteredOutputs]) {
      if (name === wanted) continue;
      this.enteredOutputs.delete(name);
      for (const out of this.context.outputResources.get(name) ?? []) {
        if (out.client === this.resource.client) this.resource.sendLeave(out);
      }
    }
    if (wanted && !this.enteredOutputs.has(wanted)) {
      this.enteredOutputs.add(wanted);
      for (const out of this.context.outputResources.get(wanted) ?? []) {
        if (out.client === this.resource.client) this.resource.sendEnter(out);
      }
    }
  }
}
