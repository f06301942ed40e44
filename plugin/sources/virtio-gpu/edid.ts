/**
 * A 128-byte EDID 1.4 base block announcing one preferred mode (VESA E-EDID, release A rev. 2).
 * Detailed timing descriptors hold at most 4095 x 4095 and a 655.35 MHz pixel clock, so larger
 * modes return null (the guest then uses the display info mode).
 */

export interface EdidOptions {
  width: number;
  height: number;
  /** Monitor name, up to 13 ASCII characters (longer is cut). */
  name: string;
  /** Refresh rate in Hz for the timing (default 60; lowered if the pixel clock would not fit). */
  refresh?: number;
  serial?: number;
  /** Three upper-case letters. */
  manufacturer?: string;
  productCode?: number;
}

export const EDID_SIZE = 128;
const DPI = 96;

// Reduced-blanking style timing: enough blanking for any receiver, small pixel clock.
const H_BLANK = 160;
const H_FRONT = 48;
const H_SYNC = 32;
const V_FRONT = 3;
const V_SYNC = 6;

export function generateEdid(options: EdidOptions): Uint8Array | null {
  const { width, height } = options;
  if (!Number.isInteger(width) || !Number.isInteger(height)) return null;
  if (width < 1 || height < 1 || width > 4095 || height > 4095) return null;
  const edid = new Uint8Array(EDID_SIZE);
  edid.set([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00], 0);

  const letters = (options.manufacturer ?? 'GFB').toUpperCase().padEnd(3, 'A');
  const code = (i: number) => Math.min(26, Math.max(1, letters.charCodeAt(i) - 64));
  const id = (code(0) << 10) | (code(1) << 5) | code(2);
  edid[8] = id >> 8;
  edid[9] = id & 0xff;
  const product = options.productCode ?? 0x4642;
  edid[10] = product & 0xff;
  edid[11] = (product >> 8) & 0xff;
  const serial = (options.serial ?? 0) >>> 0;
  new DataView(edid.buffer).setUint32(12, serial, true);
  edid[16] = 1; // week
  edid[17] = 2024 - 1990; // year
  edid[18] = 1; // EDID 1.4
  edid[19] = 4;
  edid[20] = 0xa0; // digital input, 8 bits per colour
  const widthMm = Math.round((width * 25.4) / DPI);
  const heightMm = Math.round((height * 25.4) / DPI);
  edid[21] = Math.min(255, Math.max(1, Math.round(widthMm / 10)));
  edid[22] = Math.min(255, Math.max(1, Math.round(heightMm / 10)));
  edid[23] = 120; // gamma 2.2
  edid[24] = 0x06; // sRGB default, preferred timing is native, RGB 4:4:4
  writeChromaticity(edid);
  // 35-37: no established timings. 38-53: eight unused standard timings.
  for (let i = 38; i < 54; i++) edid[i] = 0x01;

  let refresh = options.refresh ?? 60;
  const hTotal = width + H_BLANK;
  const vBlank = Math.max(V_FRONT + V_SYNC + 14, Math.ceil(height * 0.03));
  const vTotal = height + vBlank;
  let clock10k = Math.round((hTotal * vTotal * refresh) / 10000);
  if (clock10k > 0xffff) {
    refresh = Math.floor((0xffff * 10000) / (hTotal * vTotal));
    if (refresh < 1) return null;
    clock10k = Math.round((hTotal * vTotal * refresh) / 10000);
  }
  const d = 54;
  edid[d] = clock10k & 0xff;
  edid[d + 1] = clock10k >> 8;
  edid[d + 2] = width & 0xff;
  edid[d + 3] = H_BLANK & 0xff;
  edid[d + 4] = ((width >> 8) << 4) | (H_BLANK >> 8);
  edid[d + 5] = height & 0xff;
  edid[d + 6] = vBlank & 0xff;
  edid[d + 7] = ((height >> 8) << 4) | (vBlank >> 8);
  edid[d + 8] = H_FRONT & 0xff;
  edid[d + 9] = H_SYNC & 0xff;
  edid[d + 10] = ((V_FRONT & 0xf) << 4) | (V_SYNC & 0xf);
  edid[d + 11] =
    ((H_FRONT >> 8) << 6) | ((H_SYNC >> 8) << 4) | ((V_FRONT >> 4) << 2) | (V_SYNC >> 4);
  edid[d + 12] = widthMm & 0xff;
  edid[d + 13] = heightMm & 0xff;
  edid[d + 14] = ((widthMm >> 8) << 4) | (heightMm >> 8);
  edid[d + 17] = 0x1e; // digital separate sync, +hsync +vsync

  // Monitor name descriptor.
  const n = 72;
  edid[n + 3] = 0xfc;
  const name = [...options.name]
    .filter((c) => c >= ' ' && c <= '~')
    .join('')
    .slice(0, 13);
  for (let i = 0; i < 13; i++) {
    edid[n + 5 + i] = i < name.length ? name.charCodeAt(i) : i === name.length ? 0x0a : 0x20;
  }
  // Descriptors 3 and 4: dummy.
  edid[90 + 3] = 0x10;
  edid[108 + 3] = 0x10;
  edid[126] = 0; // no extensions
  let sum = 0;
  for (let i = 0; i < 127; i++) sum += edid[i]!;
  edid[127] = (256 - (sum % 256)) % 256;
  return edid;
}

function writeChromaticity(edid: Uint8Array): void {
  const tenBits = (v: number) => Math.round(v * 1024);
  const [rx, ry, gx, gy, bx, by, wx, wy] = [0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329].map(
    tenBits,
  ) as [number, number, number, number, number, number, number, number];
  edid[25] = ((rx & 3) << 6) | ((ry & 3) << 4) | ((gx & 3) << 2) | (gy & 3);
  edid[26] = ((bx & 3) << 6) | ((by & 3) << 4) | ((wx & 3) << 2) | (wy & 3);
  [rx, ry, gx, gy, bx, by, wx, wy].forEach((v, i) => (edid[27 + i] = v >> 2));
}

/** Parses what tests and logs want back out of an EDID: checksum, preferred mode, name. */
export function parseEdid(edid: Uint8Array): {
  checksumOk: boolean;
  width: number;
  height: number;
  name: string;
} {
  let sum = 0;
  for (let i = 0; i < EDID_SIZE; i++) sum += edid[i] ?? 0;
  const d = 54;
  const width = edid[d + 2]! | ((edid[d + 4]! >> 4) << 8);
  const height = edid[d + 5]! | ((edid[d + 7]! >> 4) << 8);
  let name = '';
  for (let at = 54; at < 126; at += 18) {
    if (edid[at] === 0 && edid[at + 1] === 0 && edid[at + 3] === 0xfc) {
      for (let i = 5; i < 18; i++) {
        const c = edid[at + i]!;
        if (c === 0x0a) break;
        name += String.fromCharCode(c);
      }
      name = name.trimEnd();
    }
  }
  return { checksumOk: sum % 256 === 0, width, height, name };
}
