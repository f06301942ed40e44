// The host-side twin of drawpattern.c's pattern definition: what each pixel must be, so tests can
// compare a captured frame (QEMU screendump, a dma-buf, a compositor capture) exactly.

/** Bar colors (0xRRGGBB) in drawpattern's order. */
export const barColors = [
  0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
] as const;

export const counterCells = 16;
export const counterCellSize = 16;

export interface PatternSpec {
  width: number;
  height: number;
  /** Index of the output among the connected ones (rotates the bars). */
  outputIndex: number;
  /** Frame number the counter shows; undefined: do not check the counter strip. */
  frame?: number;
  /** `--pattern solid:RRGGBB` color instead of the bars. */
  solid?: number;
}

/** True when (x, y) is inside the counter strip of a width x height output. */
export function inCounter(x: number, y: number, width: number, height: number): boolean {
  return (
    width >= counterCells * counterCellSize &&
    height >= counterCellSize &&
    y >= height - counterCellSize &&
    x < counterCells * counterCellSize
  );
}

/** The 0xRRGGBB color drawpattern puts at (x, y). */
export function expectedPixel(spec: PatternSpec, x: number, y: number): number {
  const { width, height } = spec;
  if (inCounter(x, y, width, height) && spec.frame !== undefined) {
    const cell = Math.floor(x / counterCellSize);
    const bit = ((spec.frame % 65536) >> (counterCells - 1 - cell)) & 1;
    return bit ? 0xffffff : 0x000000;
  }
  if (spec.solid !== undefined) return spec.solid;
  // Bar b covers [floor(b*W/8), floor((b+1)*W/8)): find b for x.
  let bar = Math.floor((x * 8) / width);
  while (bar < 7 && x >= Math.floor(((bar + 1) * width) / 8)) bar++;
  while (bar > 0 && x < Math.floor((bar * width) / 8)) bar--;
  return barColors[(bar + spec.outputIndex) % 8]!;
}

export interface RgbImage {
  width: number;
  height: number;
  /** 3 bytes per pixel (R, G, B), rows packed. */
  rgb: Buffer;
}

export interface PatternComparison {
  mismatches: number;
  first?: { x: number; y: number; expected: number; actual: number };
}

/** Compares every pixel of `image` with the pattern (the counter only when spec.frame is set). */
export function comparePattern(image: RgbImage, spec: PatternSpec): PatternComparison {
  if (image.width !== spec.width || image.height !== spec.height) {
    return { mismatches: image.width * image.height || 1 };
  }
  const result: PatternComparison = { mismatches: 0 };
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      if (spec.frame === undefined && inCounter(x, y, spec.width, spec.height)) continue;
      const i = (y * image.width + x) * 3;
      const actual = (image.rgb[i]! << 16) | (image.rgb[i + 1]! << 8) | image.rgb[i + 2]!;
      const expected = expectedPixel(spec, x, y);
      if (actual !== expected) {
        result.mismatches++;
        result.first ??= { x, y, expected, actual };
      }
    }
  }
  return result;
}

/** Reads the frame counter (mod 65536) from the strip; null if a cell is neither white nor black. */
export function decodeCounter(image: RgbImage): number | null {
  if (!inCounter(0, image.height - 1, image.width, image.height)) return null;
  let value = 0;
  for (let cell = 0; cell < counterCells; cell++) {
    const x = cell * counterCellSize + counterCellSize / 2;
    const y = image.height - counterCellSize / 2;
    const i = (y * image.width + x) * 3;
    const rgb = (image.rgb[i]! << 16) | (image.rgb[i + 1]! << 8) | image.rgb[i + 2]!;
    if (rgb !== 0xffffff && rgb !== 0) return null;
    value = value * 2 + (rgb === 0xffffff ? 1 : 0);
  }
  return value;
}
