/**
 * Forwards the compositor's wl_pointer and wl_keyboard events on guestfb's windows to the
 * guest's input sink (plugin/guest-input.ts). Wayland key and button codes are evdev codes and
 * pass through; a pointer position on a head's window becomes a position in the guest's
 * combined head layout; wheel axes become value120 units. Whatever is still pressed when the
 * focus leaves is released, so nothing sticks in the guest. Key repeat is the guest's: nothing
 * here repeats, and wl_keyboard's `repeated` state (v10) is not forwarded.
 */
import type { WlSurfaceProxy } from '../../build/protocols/index.js';
import type { GuestInputSink } from '../guest-input.js';

/** Where a window's input goes. */
export interface InputTarget {
  sink: GuestInputSink;
  /** The window's head in the guest's combined layout, and the layout's size; null: gone. */
  place(): { x: number; y: number; layoutWidth: number; layoutHeight: number } | null;
}

const WHEEL_AXIS_VERTICAL = 0;
/** Continuous axis units per wheel notch (weston and the example compositor send 10). */
const AXIS_UNITS_PER_NOTCH = 10;

export class InputForwarder {
  private pointerTarget: InputTarget | null = null;
  private keyboardTarget: InputTarget | null = null;
  private readonly buttonsDown = new Set<number>();
  private readonly keysDown = new Set<number>();
  /** This frame's wheel movement per axis in value120 units, from the best source offered. */
  private readonly value120 = [0, 0];
  private readonly continuous = [0, 0];
  private readonly exact = [false, false];
  private pendingPointer = false;
  /** Counters for statistics and tests. */
  readonly counters = { keys: 0, buttons: 0, motions: 0, wheels: 0, releasedOnLeave: 0 };

  /**
   * @param targetFor the input target of a surface (null: not one of guestfb's windows or its
   *   guest has no input device).
   * @param framed whether wl_pointer sends `frame` (version 5 and later).
   */
  constructor(
    private readonly targetFor: (surface: WlSurfaceProxy) => InputTarget | null,
    private framed: () => boolean,
  ) {}

  pointerEnter(surface: WlSurfaceProxy | null, x: number, y: number): void {
    this.pointerLeave();
    this.pointerTarget = surface ? this.targetFor(surface) : null;
    this.motion(x, y);
  }

  pointerLeave(): void {
    const target = this.pointerTarget;
    if (!target) return;
    for (const code of this.buttonsDown) {
      target.sink.button(code, false);
      this.counters.releasedOnLeave++;
    }
    if (this.buttonsDown.size > 0) target.sink.frame();
    this.buttonsDown.clear();
    this.resetAxes();
    this.pendingPointer = false;
    this.pointerTarget = null;
  }

  motion(x: number, y: number): void {
    const target = this.pointerTarget;
    const place = target?.place();
    if (!target || !place) return;
    target.sink.pointerAt(place.x + x, place.y + y, place.layoutWidth, place.layoutHeight);
    this.counters.motions++;
    this.touched();
  }

  button(code: number, pressed: boolean): void {
    const target = this.pointerTarget;
    if (!target) return;
    if (pressed) {
      if (this.buttonsDown.has(code)) return;
      this.buttonsDown.add(code);
    } else if (!this.buttonsDown.delete(code)) {
      return; // pressed before the pointer came in: the guest never saw it go down
    }
    target.sink.button(code, pressed);
    this.counters.buttons++;
    this.touched();
  }

  /** wl_pointer.axis: continuous movement (surface units). */
  axis(axis: number, value: number): void {
    if (!this.pointerTarget || (axis !== 0 && axis !== 1)) return;
    this.continuous[axis]! += value;
    this.touched();
  }

  /** wl_pointer.axis_discrete (v5-7): whole notches. */
  axisDiscrete(axis: number, discrete: number): void {
    if (!this.pointerTarget || (axis !== 0 && axis !== 1)) return;
    this.value120[axis]! += discrete * 120;
    this.exact[axis] = true;
    this.touched();
  }

  /** wl_pointer.axis_value120 (v8): 1/120 notches. */
  axisValue120(axis: number, value120: number): void {
    if (!this.pointerTarget || (axis !== 0 && axis !== 1)) return;
    this.value120[axis]! += value120;
    this.exact[axis] = true;
    this.touched();
  }

  /** wl_pointer.frame: one SYN_REPORT for everything since the last frame. */
  frame(): void {
    const target = this.pointerTarget;
    if (!target || !this.pendingPointer) return;
    const wheel = [0, 1].map((axis) =>
      this.exact[axis]
        ? this.value120[axis]!
        : Math.round((this.continuous[axis]! * 120) / AXIS_UNITS_PER_NOTCH),
    );
    if (wheel[0] !== 0 || wheel[1] !== 0) {
      target.sink.wheel(wheel[WHEEL_AXIS_VERTICAL]!, wheel[1]!);
      this.counters.wheels++;
    }
    this.resetAxes();
    this.pendingPointer = false;
    target.sink.frame();
  }

  private resetAxes(): void {
    this.value120.fill(0);
    this.continuous.fill(0);
    this.exact.fill(false);
  }

  /** Marks pointer input pending; without `frame` events (wl_pointer < 5) each event is one. */
  private touched(): void {
    this.pendingPointer = true;
    if (!this.framed()) this.frame();
  }

  keyboardEnter(surface: WlSurfaceProxy | null): void {
    this.keyboardLeave();
    // Keys already down at enter went down elsewhere: the guest does not get them.
    this.keyboardTarget = surface ? this.targetFor(surface) : null;
  }

  keyboardLeave(): void {
    const target = this.keyboardTarget;
    if (!target) return;
    for (const code of this.keysDown) {
      target.sink.key(code, false);
      this.counters.releasedOnLeave++;
    }
    this.keysDown.clear();
    this.keyboardTarget = null;
  }

  /** wl_keyboard.key: state 0 released, 1 pressed; 2 (repeated, v10) is ignored. */
  key(code: number, state: number): void {
    const target = this.keyboardTarget;
    if (!target) return;
    if (state === 1) {
      if (this.keysDown.has(code)) return;
      this.keysDown.add(code);
      target.sink.key(code, true);
    } else if (state === 0) {
      if (!this.keysDown.delete(code)) return;
      target.sink.key(code, false);
    } else {
      return;
    }
    this.counters.keys++;
  }

  /** A window went away: input aimed at it stops (with releases). */
  forget(target: (t: InputTarget) => boolean): void {
    if (this.pointerTarget && target(this.pointerTarget)) this.pointerLeave();
    if (this.keyboardTarget && target(this.keyboardTarget)) this.keyboardLeave();
  }
}
