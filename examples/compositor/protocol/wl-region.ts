/** wl_region: a client-built set of rectangles (used for opaque and input regions). */
import type { NativeClient } from '../../../native/index.js';
import { WlRegionResource, type WlRegionRequests } from '../../../build/protocols/wayland.js';
import { Region, rect } from '../render/region.js';

export class RegionObject implements WlRegionRequests {
  readonly region = new Region();
  readonly resource: WlRegionResource;

  constructor(client: NativeClient, version: number, id: number) {
    this.resource = WlRegionResource.create(
      client,
      Math.min(version, WlRegionResource.version),
      id,
      this,
    );
  }

  static from(resource: WlRegionResource | null): RegionObject | null {
    const handlers = resource?.handlers;
    return handlers instanceof RegionObject ? handlers : null;
  }

  add(_resource: WlRegionResource, x: number, y: number, width: number, height: number): void {
    this.region.add(rect(x, y, width, height)).simplify(256);
  }

  subtract(_resource: WlRegionResource, x: number, y: number, width: number, height: number): void {
    this.region.subtract(rect(x, y, width, height));
  }
}
