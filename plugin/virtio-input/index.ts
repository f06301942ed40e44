/**
 * guestfb as the vhost-user back-end of QEMU's `vhost-user-input-pci`: one combined keyboard +
 * absolute pointer (tablet) device. The back-end is a `GuestInputSink`: the windows of the
 * guest's display feed it, it turns their input into evdev events for the guest.
 *
 *   const input = createVhostUserInputBackend({ socketPath, role: 'listen' });
 *   // qemu ... -chardev socket,id=inp,path=SOCKET -device vhost-user-input-pci,chardev=inp
 */
import { fd as fdModule, type FdAddon } from '../../native/fd.js';
import type { GuestInputSink } from '../guest-input.js';
import type { SocketAccess } from '../common/unix-socket.js';
import {
  nativeDeviceIo,
  VhostUserServer,
  VhostUserSession,
  type ServerSession,
} from '../vhost-user/server.js';
import { linesOf, type Logger } from '../common/log.js';
import { VhostUserDevice } from '../vhost-user/vhost-user-device.js';
import {
  ABS_X,
  ABS_Y,
  EV_ABS,
  EV_KEY,
  EV_REL,
  LAST_KEY,
  FIRST_KEY,
  pixelToAbs,
  POINTER_BUTTONS,
  REL_HWHEEL,
  REL_HWHEEL_HI_RES,
  REL_WHEEL,
  REL_WHEEL_HI_RES,
  type InputEvent,
} from './evdev.js';
import { InputDeviceModel, type InputCounters } from './input-device.js';

export interface VhostUserInputBackendOptions {
  socketPath: string;
  role: 'listen' | 'connect';
  /** Device name the guest sees (ID_NAME; default "guestfb keyboard and tablet"). */
  name?: string;
  /** ID_SERIAL (default "guestfb"). */
  serial?: string;
  /** Most events held for the guest before old ones are dropped (default 1024). */
  maxHeldEvents?: number;
  /** Role 'listen': who may connect to the socket (default: the owner only, mode 0600). */
  socketAccess?: SocketAccess;
  /** The guest's name in log lines (default: the socket path). */
  guestName?: string;
  log?: Logger;
  /** For tests: the fd module to use (default: the native addon). */
  fdModule?: FdAddon;
}

export interface VhostUserInputBackend extends GuestInputSink {
  readonly connected: boolean;
  /** Counters: vhost-user messages, events delivered/dropped, status events. */
  stats(): Record<string, number>;
  /** LED state the guest last reported (LED code -> 0/1). */
  leds(): ReadonlyMap<number, number>;
  close(): void;
}

const defaultLog = linesOf((line) => console.error(line), 'guestfb virtio-input ');

export function createVhostUserInputBackend(
  options: VhostUserInputBackendOptions,
): VhostUserInputBackend {
  return new InputBackend(options);
}

class InputSession implements ServerSession {
  readonly device: VhostUserDevice<InputDeviceModel>;
  readonly connection: VhostUserSession;

  constructor(
    conn: number,
    fd: FdAddon,
    log: Logger,
    options: VhostUserInputBackendOptions,
    counters: InputCounters,
    onEnd: (reason: string) => void,
  ) {
    this.device = new VhostUserDevice({
      io: nativeDeviceIo(fd),
      log,
      createModel: (context) =>
        new InputDeviceModel(
          context,
          {
            name: options.name ?? 'guestfb keyboard and tablet',
            serial: options.serial ?? 'guestfb',
          },
          counters,
          options.maxHeldEvents,
        ),
    });
    this.connection = new VhostUserSession(conn, fd, log, this.device, onEnd);
    this.connection.start();
  }

  end(reason: string): void {
    this.connection.end(reason);
  }
}

class InputBackend implements VhostUserInputBackend {
  private readonly server: VhostUserServer<InputSession>;
  private readonly log: Logger;
  readonly counters: InputCounters = {
    eventsDelivered: 0,
    eventsDropped: 0,
    eventsWithoutDriver: 0,
    statusEvents: 0,
  };
  private readonly totals = { connections: 0, disconnects: 0 };
  /** Pointer events waiting for `frame`. */
  private pending: InputEvent[] = [];
  /** Fractional wheel movement not yet a whole notch (value120 units). */
  private wheelRest = 0;
  private hwheelRest = 0;
  private lastSessionStats: Record<string, number> = {};

  constructor(options: VhostUserInputBackendOptions) {
    const fd = options.fdModule ?? fdModule;
    this.log = options.log ?? defaultLog;
    this.server = new VhostUserServer<InputSession>({
      socketPath: options.socketPath,
      role: options.role,
      fd,
      log: this.log,
      socketAccess: options.socketAccess,
      name: options.guestName,
      startSession: (conn, ended) => {
        this.totals.connections++;
        const session: InputSession = new InputSession(
          conn,
          fd,
          this.log,
          options,
          this.counters,
          (reason) => {
            this.lastSessionStats = { ...session.device.counters };
            this.totals.disconnects++;
            ended(reason);
            this.log('info', `front-end gone: ${reason}`);
          },
        );
        return session;
      },
    });
  }

  get connected(): boolean {
    return this.server.session !== null;
  }

  private send(events: InputEvent[]): void {
    const model = this.server.session?.device.model;
    const queue = this.server.session?.device.queues[0];
    if (!model || !queue || !queue.started || !queue.enabled) {
      // No driver reading: the events would describe a state the guest never sees start.
      this.counters.eventsWithoutDriver += events.length + 1;
      return;
    }
    model.send(events);
  }

  key(code: number, pressed: boolean): void {
    if (!Number.isInteger(code) || code < FIRST_KEY || code > LAST_KEY) {
      if (!POINTER_BUTTONS.includes(code)) return;
    }
    this.send([{ type: EV_KEY, code, value: pressed ? 1 : 0 }]);
  }

  button(code: number, pressed: boolean): void {
    if (!POINTER_BUTTONS.includes(code)) return;
    this.pending.push({ type: EV_KEY, code, value: pressed ? 1 : 0 });
  }

  pointerAt(x: number, y: number, layoutWidth: number, layoutHeight: number): void {
    this.pending.push(
      { type: EV_ABS, code: ABS_X, value: pixelToAbs(x, layoutWidth) },
      { type: EV_ABS, code: ABS_Y, value: pixelToAbs(y, layoutHeight) },
    );
  }

  wheel(vertical120: number, horizontal120: number): void {
    const v = Number.isFinite(vertical120) ? Math.trunc(vertical120) : 0;
    const h = Number.isFinite(horizontal120) ? Math.trunc(horizontal120) : 0;
    // Wayland: positive = down/right. evdev: REL_WHEEL positive = up, REL_HWHEEL positive = right.
    if (v !== 0) {
      this.pending.push({ type: EV_REL, code: REL_WHEEL_HI_RES, value: -v });
      this.wheelRest += v;
      const notches = Math.trunc(this.wheelRest / 120);
      if (notches !== 0) {
        this.wheelRest -= notches * 120;
        this.pending.push({ type: EV_REL, code: REL_WHEEL, value: -notches });
      }
    }
    if (h !== 0) {
      this.pending.push({ type: EV_REL, code: REL_HWHEEL_HI_RES, value: h });
      this.hwheelRest += h;
      const notches = Math.trunc(this.hwheelRest / 120);
      if (notches !== 0) {
        this.hwheelRest -= notches * 120;
        this.pending.push({ type: EV_REL, code: REL_HWHEEL, value: notches });
      }
    }
  }

  frame(): void {
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    this.send(events);
  }

  leds(): ReadonlyMap<number, number> {
    return this.server.session?.device.model.leds ?? new Map();
  }

  stats(): Record<string, number> {
    const session = this.server.session;
    const device = session ? { ...session.device.counters } : this.lastSessionStats;
    return {
      ...this.totals,
      ...device,
      ...this.counters,
      eventsHeld: session?.device.model.heldEvents ?? 0,
    };
  }

  close(): void {
    this.server.close();
  }
}
