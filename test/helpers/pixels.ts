/** What pixelsOf reads of a decoded screenshot. */
export interface PixelSource {
  width: number;
  height: number;
  pixel(x: number, y: number): number;
}

/** Where a screenshot has pixels of `color`: their bounding box and count (count 0: none). */
export function pixelsOf(shot: PixelSource, color: number) {
  let [left, top, right, bottom, count] = [shot.width, shot.height, -1, -1, 0];
  for (let y = 0; y < shot.height; y++) {
    for (let x = 0; x < shot.width; x++) {
      if (shot.pixel(x, y) !== color) continue;
      count++;
      left = Math.min(left, x);
      top = Math.min(top, y);
      right = Math.max(right, x);
      bottom = Math.max(bottom, y);
    }
  }
  return { x: left, y: top, width: right - left + 1, height: bottom - top + 1, count };
}
