/**
 * wl_seat with a pointer and a keyboard. The keyboard gets the keymap and repeat info; both are
 * registered with the compositor's Seat (core/seat.ts), which sends them input (from the input
 * script or a test) when their client has focus.
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
        const pointer = new PointerObject(
          seat.client,
          Math.min(seat.version, WlPointerResource.version),
          id,
          context.seat,
        );
        context.seat.addPointer(pointer.resource);
      },
      getKeyboard(seat, id) {
        const keyboard = WlKeyboardResource.create(
          seat.client,
          Math.min(seat.version, WlKeyboardResource.version),
          id,
          {},
        );
        keyboard.sendKeymap(WlKeyboardKeymapFormat.xkb_v1, context.keymap.fd, context.keymap.size);
        if (keyboard.version >= 4) keyboard.sendRepeatInfo(25, 600);
        context.seat.addKeyboard(keyboard);
      },
      getTouch(seat) {
        seat.postError(WlSeatError.missing_capability, 'this seat has no touch device');
      },
    };
  });
}
