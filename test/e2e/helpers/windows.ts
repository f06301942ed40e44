/**
 * Looking at guest windows in the example compositor: find them by xdg_toplevel title, place them
 * side by side (the compositor cascades new windows, so they would overlap), and cut a window's
 * rectangle out of a screenshot as an RGB image for examples/guest/pattern.ts.
 */
import type { Compositor } from '../../../examples/compositor/index.js';
import type { Window } from '../../../examples/compositor/core/scene.js';
import { XdgSurfaceObject } from '../../../examples/compositor/protocol/xdg-surface.js';
import { decodePng } from '../../../examples/compositor/render/screenshot.js';
import type { RgbImage } from '../../../examples/guest/pattern.js';
import { poll } from '../../helpers/wait.js';

export function windowTitle(window: Window): string | null {
  const role = window.surface.roleData;
  return role instanceof XdgSurfaceObject ? (role.toplevel?.title ?? null) : null;
}

/** Mapped windows by title. */
export function windowsByTitle(compositor: Compositor): Map<string, Window> {
  const result = new Map<string, Window>();
  for (const window of compositor.scene.windows) {
    const title = windowTitle(window);
    if (title !== null) result.set(title, window);
  }
  return result;
}

/** Moves windows whose title is in `slots` to their slot (global coordinates). */
export function arrange(
  compositor: Compositor,
  slots: ReadonlyMap<string, { x: number; y: number }>,
) {
  for (const [title, window] of windowsByTitle(compositor)) {
    const slot = slots.get(title);
    if (!slot || (window.x === slot.x && window.y === slot.y)) continue;
    window.x = slot.x;
    window.y = slot.y;
    compositor.scene.treeChanged(window.surface); // damages the old and the new place
  }
}

export interface Screenshot {
  width: number;
  height: number;
  pixel(x: number, y: number): number;
}

export function screenshot(compositor: Compositor, output: string): Screenshot {
  return decodePng(compositor.screenshot(output));
}

/** The window's rectangle of a screenshot (size: the window's surface size). */
export function windowImage(shot: Screenshot, window: Window): RgbImage {
  const { width, height } = window.surface.size();
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sx = window.x + x;
      const sy = window.y + y;
      const inside = sx >= 0 && sy >= 0 && sx < shot.width && sy < shot.height;
      const pixel = inside ? shot.pixel(sx, sy) : 0;
      const o = (y * width + x) * 3;
      rgb[o] = (pixel >> 16) & 0xff;
      rgb[o + 1] = (pixel >> 8) & 0xff;
      rgb[o + 2] = pixel & 0xff;
    }
  }
  return { width, height, rgb };
}

/** Pixels of `image` that differ from `background` (0xRRGGBB). */
export function countDiffering(image: RgbImage, background: number): number {
  let count = 0;
  for (let i = 0; i < image.rgb.length; i += 3) {
    const rgb = (image.rgb[i]! << 16) | (image.rgb[i + 1]! << 8) | image.rgb[i + 2]!;
    if (rgb !== background) count++;
  }
  return count;
}

/** Polls `condition` until it holds (returns true) or `timeoutMs` passes (returns false). */
export function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  return poll(condition, { limitMs: timeoutMs, intervalMs });
}
