/**
 * xdg_toplevel: a window. The initial commit (without a buffer) gets a configure with size 0x0
 * (client picks its size); the first commit with a buffer after an acknowledged configure maps
 * the window (cascade placement); a commit with a null buffer unmaps it.
 */
import type { NativeClient } from '../../../native/index.js';
import {
  XdgToplevelResource,
  type XdgToplevelRequests,
} from '../../../build/protocols/xdg_shell.js';
import type { ServerContext } from './context.js';
import { describeClient } from './context.js';
import type { XdgSurfaceObject } from './xdg-surface.js';

/** Titles and app ids are logged and kept; bound them so a client cannot hoard memory. */
const MAX_STRING = 1024;

export class XdgToplevelObject implements XdgToplevelRequests {
  readonly resource: XdgToplevelResource;
  title = '';
  appId = '';
  mapped = false;

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
    private readonly xdgSurface: XdgSurfaceObject,
  ) {
    this.resource = XdgToplevelResource.create(client, version, id, this);
    const surface = xdgSurface.surface;
    // Added after the scene's listener, so it runs after the scene's bookkeeping for the commit.
    const removeApplied = surface.onApplied(() => this.applied());
    this.resource.onDestroy(() => {
      removeApplied();
      this.unmap();
      if (xdgSurface.toplevel === this) xdgSurface.toplevel = null;
    });
  }

  private applied(): void {
    if (!this.resource.alive) return;
    const surface = this.xdgSurface.surface;
    if (!this.xdgSurface.initialConfigureSent) {
      this.xdgSurface.initialConfigureSent = true;
      this.configure(0, 0);
      return;
    }
    if (surface.content && !this.mapped && this.xdgSurface.configured) {
      this.mapped = true;
      const window = this.context.scene.mapWindow(surface);
      this.context.log(
        `${describeClient(this.resource.client)} mapped "${this.title}" (${this.appId}) ` +
          `${surface.size().width}x${surface.size().height} at ${window.x},${window.y}`,
      );
    } else if (!surface.content && this.mapped) {
      this.unmap();
      this.xdgSurface.resetConfigure();
    }
  }

  private unmap(): void {
    if (!this.mapped) return;
    this.mapped = false;
    this.context.scene.unmapWindow(this.xdgSurface.surface);
  }

  /** xdg_toplevel.configure + xdg_surface.configure. */
  configure(width: number, height: number, states: number[] = []): number {
    if (this.resource.version >= 5) this.resource.sendWmCapabilities(new Uint8Array(0));
    this.resource.sendConfigure(width, height, new Uint8Array(new Uint32Array(states).buffer));
    return this.xdgSurface.sendConfigure();
  }

  /** Asks the client to close the window. */
  close(): void {
    this.resource.sendClose();
  }

  setParent(): void {}

  setTitle(_resource: XdgToplevelResource, title: string): void {
    this.title = title.slice(0, MAX_STRING);
  }

  setAppId(_resource: XdgToplevelResource, appId: string): void {
    this.appId = appId.slice(0, MAX_STRING);
  }

  showWindowMenu(): void {}
  move(): void {}
  resize(): void {}
  setMaxSize(): void {}
  setMinSize(): void {}
  setMaximized(): void {}
  unsetMaximized(): void {}
  setFullscreen(): void {}
  unsetFullscreen(): void {}
  setMinimized(): void {}
}
