/**
 * xdg_surface: configure/ack_configure bookkeeping between the shell and a wl_surface, and the
 * commit rules (no buffer before the first acknowledged configure).
 */
import type { NativeClient } from '../../../native/index.js';
import {
  XdgPopupResource,
  XdgSurfaceError,
  XdgSurfaceResource,
  type XdgPositionerResource,
  type XdgSurfaceRequests,
} from '../../../build/protocols/xdg_shell.js';
import { CommitRejected, type Surface } from '../core/surface.js';
import type { ServerContext } from './context.js';
import { XdgToplevelObject } from './xdg-toplevel.js';

export class XdgSurfaceObject implements XdgSurfaceRequests {
  readonly resource: XdgSurfaceResource;
  toplevel: XdgToplevelObject | null = null;
  /** Serials sent and not yet acknowledged, oldest first. */
  private readonly pendingSerials: number[] = [];
  /** Whether any configure was acknowledged since the role was (re)initialised. */
  configured = false;
  /** Whether the initial configure was sent (after the first commit without a buffer). */
  initialConfigureSent = false;
  windowGeometry: { x: number; y: number; width: number; height: number } | null = null;

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
    readonly surface: Surface,
  ) {
    this.resource = XdgSurfaceResource.create(client, version, id, this);
    surface.roleData = this;
    surface.commitChecks.push(this.commitCheck);
    this.resource.onDestroy(() => {
      const index = surface.commitChecks.indexOf(this.commitCheck);
      if (index >= 0) surface.commitChecks.splice(index, 1);
      if (surface.roleData === this) surface.roleData = null;
    });
  }

  private readonly commitCheck = (
    _surface: Surface,
    _bufferChanged: boolean,
    hasBuffer: boolean,
  ) => {
    if (!this.resource.alive) return;
    if (!this.toplevel?.resource.alive) {
      this.resource.postError(
        XdgSurfaceError.not_constructed,
        'commit before a role object exists',
      );
      throw new CommitRejected();
    }
    if (hasBuffer && !this.configured) {
      this.resource.postError(
        XdgSurfaceError.unconfigured_buffer,
        'buffer committed before the first configure was acknowledged',
      );
      throw new CommitRejected();
    }
  };

  /** Sends xdg_surface.configure with a new serial (after the role's own configure). */
  sendConfigure(): number {
    const serial = this.context.display.nextSerial();
    this.pendingSerials.push(serial);
    if (this.pendingSerials.length > 64) this.pendingSerials.shift();
    this.resource.sendConfigure(serial);
    return serial;
  }

  /** Resets to "never configured" (after an unmap). */
  resetConfigure(): void {
    this.configured = false;
    this.initialConfigureSent = false;
    this.pendingSerials.length = 0;
  }

  getToplevel(resource: XdgSurfaceResource, id: number): void {
    if (this.toplevel || this.surface.role === 'xdg_popup') {
      resource.postError(
        XdgSurfaceError.already_constructed,
        'xdg_surface already has a role object',
      );
      return;
    }
    if (this.surface.role !== null && this.surface.role !== 'xdg_toplevel') {
      resource.postError(
        XdgSurfaceError.already_constructed,
        `surface has the ${this.surface.role} role`,
      );
      return;
    }
    this.surface.role = 'xdg_toplevel';
    this.toplevel = new XdgToplevelObject(
      this.context,
      resource.client,
      resource.version,
      id,
      this,
    );
  }

  getPopup(
    resource: XdgSurfaceResource,
    id: number,
    _parent: XdgSurfaceResource | null,
    _positioner: XdgPositionerResource,
  ): void {
    // Popups are not shown by this compositor: create the object and dismiss it at once.
    const popup = XdgPopupResource.create(resource.client, resource.version, id, {
      grab() {},
      reposition() {},
    });
    popup.sendPopupDone();
  }

  setWindowGeometry(
    resource: XdgSurfaceResource,
    x: number,
    y: number,
    width: number,
    height: number,
  ): void {
    if (width <= 0 || height <= 0) {
      resource.postError(XdgSurfaceError.invalid_size, `window geometry ${width}x${height}`);
      return;
    }
    this.windowGeometry = { x, y, width, height };
  }

  ackConfigure(resource: XdgSurfaceResource, serial: number): void {
    const index = this.pendingSerials.indexOf(serial);
    if (index < 0) {
      resource.postError(XdgSurfaceError.invalid_serial, `serial ${serial} was never sent`);
      return;
    }
    this.pendingSerials.splice(0, index + 1);
    this.configured = true;
  }
}
