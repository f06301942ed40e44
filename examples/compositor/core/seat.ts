/**
 * The seat's state: where the pointer is, which surface has pointer and keyboard focus, what is
 * held down. Input comes from a driver (the input script, or a test) in output coordinates and
 * evdev codes; events go to the wl_pointer and wl_keyboard resources of the focused client.
 *
 * Focus: the pointer focuses the topmost window under it (the window's root surface); a button
 * press gives that window keyboard focus and raises it (a press on no window clears it). The keys a client gets in
 * wl_keyboard.enter are the ones held at that moment. No key repeat is generated here: clients
 * repeat from repeat_info themselves.
 *
 * Cursor: the client with pointer focus picks the image with wl_pointer.set_cursor (serial of
 * its latest enter); the scene draws it at the pointer minus the hotspot. A focus change drops
 * it (the next client sets its own; there is no default image).
 */
import {
  WlKeyboardKeyState,
  WlPointerAxis,
  WlPointerAxisSource,
  WlPointerButtonState,
  type WlKeyboardResource,
  type WlPointerResource,
} from '../../../build/protocols/wayland.js';
import type { Display } from '../../../protocol-xml/runtime/server.js';
import { SurfaceObject } from '../protocol/wl-surface.js';
import type { Scene } from './scene.js';
import type { Surface } from './surface.js';

/** Continuous axis units per wheel notch (what weston sends for a wheel click). */
export const AXIS_UNITS_PER_NOTCH = 10;

/** XKB modifier masks of the example keymap (keymap.ts): Shift, Control, Mod1 (Alt). */
const MODIFIER_KEYS = new Map<number, number>([
  [42, 1], // KEY_LEFTSHIFT
  [54, 1], // KEY_RIGHTSHIFT
  [29, 4], // KEY_LEFTCTRL
  [97, 4], // KEY_RIGHTCTRL
  [56, 8], // KEY_LEFTALT
  [100, 8], // KEY_RIGHTALT
]);

export class Seat {
  x = 0;
  y = 0;
  private readonly pointers = new Set<WlPointerResource>();
  private readonly keyboards = new Set<WlKeyboardResource>();
  private pointerFocus: SurfaceObject | null = null;
  /** Serial of the latest wl_pointer.enter (set_cursor must name it). */
  private enterSerial: number | null = null;
  private keyboardFocus: SurfaceObject | null = null;
  private readonly keysDown = new Set<number>();
  private readonly buttonsDown = new Set<number>();
  private modifiers = 0;
  private readonly startMs = Date.now();

  constructor(
    private readonly display: Display,
    private readonly scene: Scene,
  ) {}

  addPointer(pointer: WlPointerResource): void {
    this.pointers.add(pointer);
    pointer.onDestroy(() => this.pointers.delete(pointer));
    // A pointer created while its client's surface is under the cursor hears about it now.
    const focus = this.liveFocus('pointer');
    if (focus && focus.resource.client === pointer.client) {
      const local = this.local(focus);
      if (local) {
        this.enterSerial = this.display.nextSerial();
        pointer.sendEnter(this.enterSerial, focus.resource, local.x, local.y);
      }
      if (pointer.version >= 5) pointer.sendFrame();
    }
  }

  addKeyboard(keyboard: WlKeyboardResource): void {
    this.keyboards.add(keyboard);
    keyboard.onDestroy(() => this.keyboards.delete(keyboard));
    const focus = this.liveFocus('keyboard');
    if (focus && focus.resource.client === keyboard.client) {
      keyboard.sendEnter(this.display.nextSerial(), focus.resource, this.heldKeys());
      keyboard.sendModifiers(this.display.nextSerial(), this.modifiers, 0, 0, 0);
    }
  }

  private time(): number {
    return (Date.now() - this.startMs) >>> 0;
  }

  /** The focus surface if it still exists and is mapped (a destroyed one just goes away). */
  private liveFocus(kind: 'pointer' | 'keyboard'): SurfaceObject | null {
    const focus = kind === 'pointer' ? this.pointerFocus : this.keyboardFocus;
    if (focus && (!focus.resource.alive || !this.scene.windowOf(focus.surface))) {
      if (kind === 'pointer') this.pointerFocus = null;
      else this.keyboardFocus = null;
      return null;
    }
    return focus;
  }

  private local(object: SurfaceObject): { x: number; y: number } | null {
    const position = this.scene.positionOf(object.surface);
    return position ? { x: this.x - position.x, y: this.y - position.y } : null;
  }

  /** The topmost window whose root surface is under (x, y). */
  private windowAt(x: number, y: number): SurfaceObject | null {
    for (let i = this.scene.windows.length - 1; i >= 0; i--) {
      const window = this.scene.windows[i]!;
      const size = window.surface.size();
      if (x >= window.x && y >= window.y && x < window.x + size.width && y < window.y + size.height)
        return SurfaceObject.of(window.surface);
    }
    return null;
  }

  private pointersOf(object: SurfaceObject): WlPointerResource[] {
    return [...this.pointers].filter((p) => p.alive && p.client === object.resource.client);
  }

  private keyboardsOf(object: SurfaceObject): WlKeyboardResource[] {
    return [...this.keyboards].filter((k) => k.alive && k.client === object.resource.client);
  }

  private heldKeys(): Uint8Array {
    const keys = new Uint8Array(this.keysDown.size * 4);
    const view = new DataView(keys.buffer);
    [...this.keysDown].forEach((key, i) => view.setUint32(i * 4, key, true));
    return keys;
  }

  private frame(object: SurfaceObject): void {
    for (const pointer of this.pointersOf(object)) if (pointer.version >= 5) pointer.sendFrame();
  }

  /**
   * wl_pointer.set_cursor: shown while `pointer`'s client has the pointer focus and `serial` is
   * its latest enter's; otherwise ignored, as the protocol says. Null hides the cursor.
   */
  setCursor(
    pointer: WlPointerResource,
    serial: number,
    surface: Surface | null,
    hotX: number,
    hotY: number,
  ): void {
    const focus = this.liveFocus('pointer');
    if (!focus || focus.resource.client !== pointer.client || serial !== this.enterSerial) return;
    this.scene.setCursor(surface ? { surface, hotX, hotY } : null);
  }

  /** Moves the pointer to output coordinates (global space); enter/leave/motion + frame. */
  moveTo(x: number, y: number): void {
    this.x = x;
    this.y = y;
    this.scene.movePointer(x, y);
    const under = this.windowAt(x, y);
    const focus = this.liveFocus('pointer');
    if (under !== focus) {
      // The old focus's cursor image is not the new one's.
      this.scene.setCursor(null);
      this.enterSerial = null;
      if (focus) {
        const serial = this.display.nextSerial();
        for (const pointer of this.pointersOf(focus)) pointer.sendLeave(serial, focus.resource);
        this.frame(focus);
      }
      this.pointerFocus = under;
      if (under) {
        const local = this.local(under)!;
        const serial = this.display.nextSerial();
        this.enterSerial = serial;
        for (const pointer of this.pointersOf(under))
          pointer.sendEnter(serial, under.resource, local.x, local.y);
        this.frame(under);
      }
      return;
    }
    if (!focus) return;
    const local = this.local(focus);
    if (!local) return;
    const time = this.time();
    for (const pointer of this.pointersOf(focus)) pointer.sendMotion(time, local.x, local.y);
    this.frame(focus);
  }

  /** A button (evdev code); a press focuses the keyboard on the window under the pointer. */
  button(code: number, pressed: boolean): void {
    if (pressed === this.buttonsDown.has(code)) return;
    if (pressed) this.buttonsDown.add(code);
    else this.buttonsDown.delete(code);
    const focus = this.liveFocus('pointer');
    if (pressed) {
      // Click to focus; a click on no window takes the keyboard focus away.
      if (focus) this.scene.raise(focus.surface);
      this.focusKeyboard(focus);
    }
    if (!focus) return;
    const serial = this.display.nextSerial();
    const time = this.time();
    const state = pressed ? WlPointerButtonState.pressed : WlPointerButtonState.released;
    for (const pointer of this.pointersOf(focus)) pointer.sendButton(serial, time, code, state);
    this.frame(focus);
  }

  /** Wheel notches (positive = down): axis_source, axis_value120 (v8) or axis_discrete (v5-7),
   * axis, frame. */
  wheel(notches: number): void {
    const focus = this.liveFocus('pointer');
    if (!focus || notches === 0) return;
    const time = this.time();
    const axis = WlPointerAxis.vertical_scroll;
    for (const pointer of this.pointersOf(focus)) {
      if (pointer.version >= 5) pointer.sendAxisSource(WlPointerAxisSource.wheel);
      if (pointer.version >= 8) pointer.sendAxisValue120(axis, notches * 120);
      else if (pointer.version >= 5) pointer.sendAxisDiscrete(axis, notches);
      pointer.sendAxis(time, axis, notches * AXIS_UNITS_PER_NOTCH);
    }
    this.frame(focus);
  }

  /** Gives keyboard focus to a surface (leave to the old one, enter with held keys). */
  focusKeyboard(object: SurfaceObject | null): void {
    const focus = this.liveFocus('keyboard');
    if (object === focus) return;
    if (focus) {
      const serial = this.display.nextSerial();
      for (const keyboard of this.keyboardsOf(focus)) keyboard.sendLeave(serial, focus.resource);
    }
    this.keyboardFocus = object;
    if (object) {
      const keys = this.heldKeys();
      const serial = this.display.nextSerial();
      for (const keyboard of this.keyboardsOf(object)) {
        keyboard.sendEnter(serial, object.resource, keys);
        keyboard.sendModifiers(this.display.nextSerial(), this.modifiers, 0, 0, 0);
      }
    }
  }

  /** A key (evdev code) to the focused client, then its modifiers when they changed. */
  key(code: number, pressed: boolean): void {
    if (pressed === this.keysDown.has(code)) return;
    if (pressed) this.keysDown.add(code);
    else this.keysDown.delete(code);
    let modifiers = 0;
    for (const key of this.keysDown) modifiers |= MODIFIER_KEYS.get(key) ?? 0;
    const changed = modifiers !== this.modifiers;
    this.modifiers = modifiers;
    const focus = this.liveFocus('keyboard');
    if (!focus) return;
    const serial = this.display.nextSerial();
    const time = this.time();
    const state = pressed ? WlKeyboardKeyState.pressed : WlKeyboardKeyState.released;
    for (const keyboard of this.keyboardsOf(focus)) {
      keyboard.sendKey(serial, time, code, state);
      if (changed) keyboard.sendModifiers(this.display.nextSerial(), modifiers, 0, 0, 0);
    }
  }

  /** Flushes events to clients (after a script line). */
  flush(): void {
    this.display.flushClients();
  }
}
