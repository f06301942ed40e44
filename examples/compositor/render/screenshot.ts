/**
 * PNG screenshots of an output image (pngjs), named `<output-name>-<sequence>.png`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import type { OutputImage } from './compose.js';

/** Encodes an XRGB8888 image as an opaque RGBA PNG. */
export function encodePng(image: OutputImage): Buffer {
  const png = new PNG({ width: image.width, height: image.height, colorType: 6 });
  const source = image.pixels;
  const target = png.data;
  for (let i = 0; i < source.length; i += 4) {
    target[i] = source[i + 2];
    target[i + 1] = source[i + 1];
    target[i + 2] = source[i];
    target[i + 3] = 0xff;
  }
  return PNG.sync.write(png);
}

/** Decodes a PNG into 0xRRGGBB pixels (for tests and tools). */
export function decodePng(data: Buffer): {
  width: number;
  height: number;
  pixel(x: number, y: number): number;
} {
  const png = PNG.sync.read(data);
  return {
    width: png.width,
    height: png.height,
    pixel(x, y) {
      const i = (y * png.width + x) * 4;
      return (png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2];
    },
  };
}

/** Output names become file names: keep them to a safe character set. */
export function screenshotFileName(outputName: string, sequence: number): string {
  const safe = outputName.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_') || 'output';
  return `${safe}-${String(sequence).padStart(6, '0')}.png`;
}

/** Writes numbered screenshots of outputs into a folder. */
export class ScreenshotWriter {
  private readonly sequences = new Map<string, number>();

  constructor(readonly directory: string) {
    mkdirSync(directory, { recursive: true });
  }

  /** Writes the PNG and returns its path. */
  write(outputName: string, png: Buffer): string {
    const sequence = (this.sequences.get(outputName) ?? 0) + 1;
    this.sequences.set(outputName, sequence);
    const file = path.join(this.directory, screenshotFileName(outputName, sequence));
    writeFileSync(file, png);
    return file;
  }
}
