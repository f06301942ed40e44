/**
 * The example compositor as the target of an input script (input-script.ts): the seat takes the
 * pointer and keyboard lines, windows are found by their xdg_toplevel title, screenshots go to
 * a directory. Used by guestfb-compositor's --input-script and by tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Compositor } from './index.js';
import type { Window } from './core/scene.js';
import type { ScriptTarget } from './input-script.js';
import { SurfaceObject } from './protocol/wl-surface.js';
import { XdgSurfaceObject } from './protocol/xdg-surface.js';

/** A window's xdg_toplevel title (null: not a toplevel, or untitled). */
export function windowTitle(window: Window): string | null {
  const role = window.surface.roleData;
  return role instanceof XdgSurfaceObject ? (role.toplevel?.title ?? null) : null;
}

/** The topmost mapped window titled `title`. */
export function findWindow(compositor: Compositor, title: string): Window | undefined {
  return compositor.scene.windows.findLast((window) => windowTitle(window) === title);
}

export function compositorScriptTarget(
  compositor: Compositor,
  screenshotDir: string,
  log: (message: string) => void,
): ScriptTarget {
  const { seat, scene } = compositor;
  const mustFind = (title: string): Window => {
    const window = findWindow(compositor, title);
    if (!window) throw new Error(`no window "${title}"`);
    return window;
  };
  return {
    moveTo: (x, y) => seat.moveTo(x, y),
    button: (code, pressed) => seat.button(code, pressed),
    key: (code, pressed) => seat.key(code, pressed),
    wheel: (notches) => seat.wheel(notches),
    flush: () => seat.flush(),
    screenshot: (name) => {
      fs.mkdirSync(screenshotDir, { recursive: true });
      const outputs = scene.outputs;
      return outputs.map((output) => {
        const file = path.join(
          screenshotDir,
          outputs.length > 1 ? `${name}-${output.name}.png` : `${name}.png`,
        );
        fs.writeFileSync(file, compositor.screenshot(output.name));
        log(`input script: screenshot ${file}`);
        return file;
      });
    },
    hasWindow: (title) => findWindow(compositor, title) !== undefined,
    place: (title, x, y) => {
      const window = mustFind(title);
      if (window.x === x && window.y === y) return;
      window.x = x;
      window.y = y;
      scene.treeChanged(window.surface); // damages the old and the new place
    },
    focus: (title) => {
      if (title === null) {
        seat.focusKeyboard(null);
        return;
      }
      const window = mustFind(title);
      scene.raise(window.surface);
      seat.focusKeyboard(SurfaceObject.of(window.surface));
    },
  };
}
