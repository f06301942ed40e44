/**
 * A small self-contained XKB keymap (US letters, digits, a few control keys; no includes, so it
 * compiles without xkeyboard-config data) for wl_keyboard.keymap, shared through a sealed memfd.
 */
import { createSealedFile, type FeedbackFdOps } from './dmabuf/feedback.js';

/** evdev key codes + 8 = XKB key codes. */
const rows: [string, number][] = [
  ['qwertyuiop', 24],
  ['asdfghjkl', 38],
  ['zxcvbnm', 52],
];
const digits = '1234567890';

function keycodes(): string {
  const lines = ['minimum = 8;', 'maximum = 255;'];
  for (const [letters, first] of rows) {
    [...letters].forEach((letter, i) => lines.push(`<K_${letter.toUpperCase()}> = ${first + i};`));
  }
  [...digits].forEach((digit, i) => lines.push(`<K_${digit}> = ${10 + i};`));
  lines.push(
    '<ESC> = 9;',
    '<BKSP> = 22;',
    '<TAB> = 23;',
    '<RTRN> = 36;',
    '<LCTL> = 37;',
    '<LFSH> = 50;',
    '<SPCE> = 65;',
  );
  return lines.map((line) => `    ${line}`).join('\n');
}

function symbols(): string {
  const lines: string[] = [];
  for (const [letters] of rows) {
    for (const letter of letters) {
      lines.push(
        `key <K_${letter.toUpperCase()}> { type = "ALPHABETIC", [ ${letter}, ${letter.toUpperCase()} ] };`,
      );
    }
  }
  for (const digit of digits) lines.push(`key <K_${digit}> { [ ${digit} ] };`);
  lines.push(
    'key <ESC> { [ Escape ] };',
    'key <BKSP> { [ BackSpace ] };',
    'key <TAB> { [ Tab ] };',
    'key <RTRN> { [ Return ] };',
    'key <LCTL> { [ Control_L ] };',
    'key <LFSH> { [ Shift_L ] };',
    'key <SPCE> { [ space ] };',
    'modifier_map Shift { <LFSH> };',
    'modifier_map Control { <LCTL> };',
  );
  return lines.map((line) => `    ${line}`).join('\n');
}

export const KEYMAP = `xkb_keymap {
  xkb_keycodes "guestfb" {
${keycodes()}
  };
  xkb_types "guestfb" {
    type "ONE_LEVEL" {
      modifiers = none;
      level_name[Level1] = "Any";
    };
    type "ALPHABETIC" {
      modifiers = Shift;
      map[Shift] = Level2;
      level_name[Level1] = "Base";
      level_name[Level2] = "Caps";
    };
  };
  xkb_compatibility "guestfb" {
    interpret Shift_L { action = SetMods(modifiers = Shift); };
    interpret Control_L { action = SetMods(modifiers = Control); };
  };
  xkb_symbols "guestfb" {
${symbols()}
  };
};
`;

/** wl_keyboard.keymap_format.xkb_v1 */
export const KEYMAP_FORMAT_XKB_V1 = 1;

/** The keymap, NUL-terminated as wl_keyboard.keymap requires, in a sealed memfd (caller owns). */
export function createKeymapFile(fdOps: FeedbackFdOps): { fd: number; size: number } {
  const bytes = new TextEncoder().encode(`${KEYMAP}\0`);
  return { fd: createSealedFile('guestfb-keymap', bytes, fdOps), size: bytes.byteLength };
}
