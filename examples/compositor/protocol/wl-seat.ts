/**
 * wl_seat with a pointer and a keyboard. Nothing drives input yet (headless), but clients that
 * insist on a seat get well-formed objects: the keyboard gets the keymap and repeat info.
 */
import {
  WlKeyboardKeymapFormat,
  WlKeyboardResource,
  WlPointerResource,
  WlSeatCapability,
  WlSeatError,
  WlSeatResource,
} from '../../../build/protocols/wayland.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { PointerObject } from './wl-pointer.js';

export const WL_SEAT_VERSION = 8;
export const SEAT_NAME = 'seat0';

export function createSeatGlobal(context: ServerContext): Global {
  return WlSeatResource.global(context.display, WL_SEAT_VERSION, (resource) => {
    context.noteClient(resource.client);
    resource.sendCapabilities(WlSeatCapability.pointer | WlSeatCapability.keyboard);
    resource.sendName(SEAT_NAME);
    return {
      getPointer(seat, id) {
        new PointerObject(seat.client, Math.min(seat.version, WlPointerResource.version), id);
      },
      getKeyboard(seat, id) {
        const keyboard = WlKeyboardResource.create(
          seat.client,
          Math.min(seat.version, WlKeyboardResource.version),
          id,
          {},
        );
        keyboard.sendKeymap(WlKeyboardKeymapFormat.xkb_v1, context.keymap.fd, context.keymap.size);
        keyboard.sendRepeatInfo(25, 600);
      },
      getTouch(seat) {
        seat.postError(WlSeatError.missing_capability, 'this seat has no touch device');
      },
    };
  });
}
