/**
 * Linux evdev codes (linux/input-event-codes.h) and the virtio-input config space (virtio spec
 * 5.8: `struct virtio_input_config`, 136 bytes: select, subsel, size, 5 reserved, 128-byte union).
 */

export const EV_SYN = 0x00;
export const EV_KEY = 0x01;
export const EV_REL = 0x02;
export const EV_ABS = 0x03;
export const EV_MSC = 0x04;
export const EV_LED = 0x11;
export const EV_REP = 0x14;

export const SYN_REPORT = 0;

export const REL_HWHEEL = 0x06;
export const REL_WHEEL = 0x08;
export const REL_WHEEL_HI_RES = 0x0b;
export const REL_HWHEEL_HI_RES = 0x0c;

export const ABS_X = 0x00;
export const ABS_Y = 0x01;
/** Axis range of the absolute pointer (QEMU's virtio-tablet uses the same). */
export const ABS_MAX = 32767;

export const BTN_LEFT = 0x110;
export const BTN_RIGHT = 0x111;
export const BTN_MIDDLE = 0x112;
export const BTN_SIDE = 0x113;
export const BTN_EXTRA = 0x114;
export const POINTER_BUTTONS = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA];

/** Keyboard keys offered: KEY_ESC (1) .. 0xff, every key a PC keyboard sends. */
export const FIRST_KEY = 1;
export const LAST_KEY = 0xff;

export const LED_NUML = 0;
export const LED_CAPSL = 1;
export const LED_SCROLLL = 2;

export const BUS_VIRTUAL = 0x06;

export const CfgSelect = {
  UNSET: 0x00,
  ID_NAME: 0x01,
  ID_SERIAL: 0x02,
  ID_DEVIDS: 0x03,
  PROP_BITS: 0x10,
  EV_BITS: 0x11,
  ABS_INFO: 0x12,
} as const;

export const CONFIG_SIZE = 136;
const UNION_OFFSET = 8;
const UNION_SIZE = 128;

export interface InputIdentity {
  name: string;
  serial: string;
}

/** One evdev event as virtio-input carries it: le16 type, le16 code, le32 value. */
export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

export const EVENT_SIZE = 8;

export function encodeEvent(event: InputEvent, into = new Uint8Array(EVENT_SIZE)): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset, EVENT_SIZE);
  view.setUint16(0, event.type, true);
  view.setUint16(2, event.code, true);
  view.setInt32(4, event.value, true);
  return into;
}

export function decodeEvent(bytes: Uint8Array): InputEvent {
  const view = new DataView(bytes.buffer, bytes.byteOffset, EVENT_SIZE);
  return {
    type: view.getUint16(0, true),
    code: view.getUint16(2, true),
    value: view.getInt32(4, true),
  };
}

function bitmap(codes: readonly number[]): Uint8Array {
  const size = codes.length === 0 ? 0 : Math.floor(Math.max(...codes) / 8) + 1;
  const bits = new Uint8Array(size);
  for (const code of codes) bits[code >> 3]! |= 1 << (code & 7);
  return bits;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/** The event codes the device offers, by event type (one combined keyboard + tablet). */
export const OFFERED_EVENTS: ReadonlyMap<number, readonly number[]> = new Map([
  [EV_KEY, [...range(FIRST_KEY, LAST_KEY), ...POINTER_BUTTONS]],
  [EV_REL, [REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES]],
  [EV_ABS, [ABS_X, ABS_Y]],
  [EV_LED, [LED_NUML, LED_CAPSL, LED_SCROLLL]],
  // Any non-empty bitmap: the guest kernel then repeats held keys itself.
  [EV_REP, [0]],
]);

const eventBitmaps = new Map([...OFFERED_EVENTS].map(([type, codes]) => [type, bitmap(codes)]));

/**
 * The config space as it reads for a select/subsel pair: the union holds the answer and
 * `size` its length (0: nothing to say, e.g. an event type not offered).
 */
export function configSpace(select: number, subsel: number, identity: InputIdentity): Uint8Array {
  const config = new Uint8Array(CONFIG_SIZE);
  config[0] = select;
  config[1] = subsel;
  let data: Uint8Array = new Uint8Array(0);
  switch (select) {
    case CfgSelect.ID_NAME:
      if (subsel === 0) data = new TextEncoder().encode(identity.name);
      break;
    case CfgSelect.ID_SERIAL:
      if (subsel === 0) data = new TextEncoder().encode(identity.serial);
      break;
    case CfgSelect.ID_DEVIDS:
      if (subsel === 0) {
        data = new Uint8Array(8);
        const view = new DataView(data.buffer);
        view.setUint16(0, BUS_VIRTUAL, true);
        view.setUint16(2, 0, true); // vendor
        view.setUint16(4, 0, true); // product
        view.setUint16(6, 1, true); // version
      }
      break;
    case CfgSelect.PROP_BITS:
      break; // no properties: not INPUT_PROP_DIRECT (that would make a touchscreen)
    case CfgSelect.EV_BITS:
      data = eventBitmaps.get(subsel) ?? data;
      break;
    case CfgSelect.ABS_INFO:
      if (subsel === ABS_X || subsel === ABS_Y) {
        data = new Uint8Array(20); // min, max, fuzz, flat, res (le32 each)
        new DataView(data.buffer).setUint32(4, ABS_MAX, true);
      }
      break;
  }
  data = data.subarray(0, UNION_SIZE);
  config[2] = data.length;
  config.set(data, UNION_OFFSET);
  return config;
}

/** A pixel of a `size`-pixel axis as an absolute value: the centre of the pixel, so a guest
 * that maps back with libinput's `value * size / (ABS_MAX + 1)` lands on the same pixel. */
export function pixelToAbs(pixel: number, size: number): number {
  if (!(size > 0) || !Number.isFinite(pixel)) return 0;
  const clamped = Math.min(Math.max(pixel, 0), size - 1);
  return Math.min(ABS_MAX, Math.floor(((Math.floor(clamped) + 0.5) * (ABS_MAX + 1)) / size));
}

/** The evdev key names the input script uses (KEY_A ...), from linux/input-event-codes.h. */
export const KEY_CODES: Readonly<Record<string, number>> = {
  KEY_ESC: 1,
  KEY_1: 2,
  KEY_2: 3,
  KEY_3: 4,
  KEY_4: 5,
  KEY_5: 6,
  KEY_6: 7,
  KEY_7: 8,
  KEY_8: 9,
  KEY_9: 10,
  KEY_0: 11,
  KEY_MINUS: 12,
  KEY_EQUAL: 13,
  KEY_BACKSPACE: 14,
  KEY_TAB: 15,
  KEY_Q: 16,
  KEY_W: 17,
  KEY_E: 18,
  KEY_R: 19,
  KEY_T: 20,
  KEY_Y: 21,
  KEY_U: 22,
  KEY_I: 23,
  KEY_O: 24,
  KEY_P: 25,
  KEY_LEFTBRACE: 26,
  KEY_RIGHTBRACE: 27,
  KEY_ENTER: 28,
  KEY_LEFTCTRL: 29,
  KEY_A: 30,
  KEY_S: 31,
  KEY_D: 32,
  KEY_F: 33,
  KEY_G: 34,
  KEY_H: 35,
  KEY_J: 36,
  KEY_K: 37,
  KEY_L: 38,
  KEY_SEMICOLON: 39,
  KEY_APOSTROPHE: 40,
  KEY_GRAVE: 41,
  KEY_LEFTSHIFT: 42,
  KEY_BACKSLASH: 43,
  KEY_Z: 44,
  KEY_X: 45,
  KEY_C: 46,
  KEY_V: 47,
  KEY_B: 48,
  KEY_N: 49,
  KEY_M: 50,
  KEY_COMMA: 51,
  KEY_DOT: 52,
  KEY_SLASH: 53,
  KEY_RIGHTSHIFT: 54,
  KEY_KPASTERISK: 55,
  KEY_LEFTALT: 56,
  KEY_SPACE: 57,
  KEY_CAPSLOCK: 58,
  KEY_F1: 59,
  KEY_F2: 60,
  KEY_F3: 61,
  KEY_F4: 62,
  KEY_F5: 63,
  KEY_F6: 64,
  KEY_F7: 65,
  KEY_F8: 66,
  KEY_F9: 67,
  KEY_F10: 68,
  KEY_NUMLOCK: 69,
  KEY_SCROLLLOCK: 70,
  KEY_F11: 87,
  KEY_F12: 88,
  KEY_RIGHTCTRL: 97,
  KEY_RIGHTALT: 100,
  KEY_HOME: 102,
  KEY_UP: 103,
  KEY_PAGEUP: 104,
  KEY_LEFT: 105,
  KEY_RIGHT: 106,
  KEY_END: 107,
  KEY_DOWN: 108,
  KEY_PAGEDOWN: 109,
  KEY_INSERT: 110,
  KEY_DELETE: 111,
  KEY_LEFTMETA: 125,
  KEY_RIGHTMETA: 126,
};

/**
 * The keys that type a character on a US layout: [key, shifted]. Covers printable ASCII and
 * newline (Enter), for the input script's `type TEXT`.
 */
export function keyForChar(char: string): { code: number; shift: boolean } | null {
  const plain = "1234567890-=qwertyuiop[]asdfghjkl;'`\\zxcvbnm,./";
  const shifted = '!@#$%^&*()_+QWERTYUIOP{}ASDFGHJKL:"~|ZXCVBNM<>?';
  const names = [
    ...'1234567890'.split('').map((d) => `KEY_${d}`),
    'KEY_MINUS',
    'KEY_EQUAL',
    ...'QWERTYUIOP'.split('').map((l) => `KEY_${l}`),
    'KEY_LEFTBRACE',
    'KEY_RIGHTBRACE',
    ...'ASDFGHJKL'.split('').map((l) => `KEY_${l}`),
    'KEY_SEMICOLON',
    'KEY_APOSTROPHE',
    'KEY_GRAVE',
    'KEY_BACKSLASH',
    ...'ZXCVBNM'.split('').map((l) => `KEY_${l}`),
    'KEY_COMMA',
    'KEY_DOT',
    'KEY_SLASH',
  ];
  if (char === ' ') return { code: KEY_CODES.KEY_SPACE!, shift: false };
  if (char === '\n') return { code: KEY_CODES.KEY_ENTER!, shift: false };
  if (char === '\t') return { code: KEY_CODES.KEY_TAB!, shift: false };
  let at = plain.indexOf(char);
  if (at >= 0) return { code: KEY_CODES[names[at]!]!, shift: false };
  at = shifted.indexOf(char);
  if (at >= 0) return { code: KEY_CODES[names[at]!]!, shift: true };
  return null;
}
