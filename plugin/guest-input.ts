/**
 * The interface between the windows that receive input (plugin/present) and a device that
 * delivers it to a guest (plugin/virtio-input). It speaks evdev, because Wayland's key and
 * button codes already are evdev codes; it knows nothing of Wayland or virtio.
 */

/** Input to one guest. Every method is cheap and never throws for any number it is given. */
export interface GuestInputSink {
  /** A key went down or up (evdev code, e.g. KEY_A = 30). Sent at once with its own SYN_REPORT. */
  key(code: number, pressed: boolean): void;
  /** A pointer button went down or up (evdev code, e.g. BTN_LEFT = 0x110); sent with `frame`. */
  button(code: number, pressed: boolean): void;
  /**
   * The pointer is at (x, y) pixels of the guest's combined head layout, which is
   * `layoutWidth` x `layoutHeight` pixels; sent with `frame`.
   */
  pointerAt(x: number, y: number, layoutWidth: number, layoutHeight: number): void;
  /**
   * Wheel movement in 1/120 notches (`axis_value120` units): positive = down / right.
   * Sent with `frame`.
   */
  wheel(vertical120: number, horizontal120: number): void;
  /** Ends one group of pointer events (one SYN_REPORT). */
  frame(): void;
}

/** A head's rectangle in the guest's combined layout. */
export interface LayoutRect {
  id: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The guest's combined head layout: heads where the source places them when those rectangles
 * do not overlap, else left to right in head order (what a guest desktop does with outputs it
 * was given no positions for). Only enabled heads take part.
 */
export function headLayout(
  heads: readonly {
    id: number;
    x: number;
    y: number;
    width: number;
    height: number;
    enabled: boolean;
  }[],
): { rects: LayoutRect[]; width: number; height: number } {
  const enabled = heads.filter((h) => h.enabled && h.width > 0 && h.height > 0);
  const overlap = enabled.some((a, i) =>
    enabled.some(
      (b, j) =>
        j > i &&
        a.x < b.x + b.width &&
        b.x < a.x + a.width &&
        a.y < b.y + b.height &&
        b.y < a.y + a.height,
    ),
  );
  let rects: LayoutRect[];
  if (overlap || enabled.some((h) => h.x < 0 || h.y < 0)) {
    let x = 0;
    rects = [...enabled]
      .sort((a, b) => a.id - b.id)
      .map((h) => {
        const rect = { id: h.id, x, y: 0, width: h.width, height: h.height };
        x += h.width;
        return rect;
      });
  } else {
    rects = enabled.map((h) => ({ id: h.id, x: h.x, y: h.y, width: h.width, height: h.height }));
  }
  let width = 0;
  let height = 0;
  for (const r of rects) {
    width = Math.max(width, r.x + r.width);
    height = Math.max(height, r.y + r.height);
  }
  return { rects, width, height };
}
