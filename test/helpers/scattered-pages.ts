// Page lists laid out like guest RAM from an allocator, for the udmabuf tests on the host and in
// the kernel-tier VM.
import type { MemfdRange } from '../../plugin/dmabuf/index.js';

/**
 * `pageCount` single-page ranges of `fd` in framebuffer order: runs of 1..12 contiguous pages,
 * each run in its own 16-page slot, slots used in an order shuffled by `seed`. `bytes` is the
 * memfd size the slots need.
 */
export function scatteredPages(
  fd: number,
  pageCount: number,
  pageSize: number,
  seed: number,
): { pages: MemfdRange[]; bytes: number } {
  let state = seed;
  const random = (n: number) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  const runs: number[] = [];
  for (let left = pageCount; left > 0; left -= runs[runs.length - 1]!) {
    runs.push(Math.min(left, 1 + random(12)));
  }
  const slots = runs.map((_, index) => index);
  for (let i = slots.length - 1; i > 0; i--) {
    const j = random(i + 1);
    [slots[i], slots[j]] = [slots[j]!, slots[i]!];
  }
  const pages: MemfdRange[] = [];
  runs.forEach((run, index) => {
    for (let page = 0; page < run; page++) {
      pages.push({ fd, offset: (slots[index]! * 16 + page) * pageSize, length: pageSize });
    }
  });
  return { pages, bytes: runs.length * 16 * pageSize };
}
