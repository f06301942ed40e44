/**
 * A synthetic guest: a moving test pattern drawn into "guest RAM" (a sealed memfd) whose
 * framebuffer pages are laid out in shuffled runs, like a real guest's scattered GEM backing.
 * It exercises the same path a virtio-gpu guest does: scattered ranges -> coalescing -> udmabuf
 * list -> dma-buf, and flushes damage (the old and new box positions) at a fixed rate.
 *
 * The pattern is a pure function of (x, y, frame, width, height) so tests can compute every
 * expected pixel.
 */
import { fd, Seal } from '../../native/fd.js';
import { DRM_FORMAT_MOD_LINEAR, DrmFormat } from '../common/formats.js';
import { backingSize, type BackingRange, type GuestBuffer } from '../common/backing.js';
import type {
  CursorImage,
  CursorUpdate,
  FramebufferSource,
  HeadInfo,
  Rect,
  ScanoutInfo,
  SourceEventName,
  SourceListener,
  SourceResource,
  SourceStats,
} from './types.js';

export const PAGE_SIZE = 4096;

/** Side of the moving box for a given framebuffer size. */
export function boxSize(width: number, height: number): number {
  return Math.max(8, Math.floor(Math.min(width, height) / 8));
}

/** A triangle wave over 0..limit (inclusive). */
function bounce(t: number, limit: number): number {
  if (limit <= 0) return 0;
  const period = 2 * limit;
  const phase = t % period;
  return phase <= limit ? phase : period - phase;
}

/** Top-left corner of the box in a frame. */
export function boxPosition(frame: number, width: number, height: number): [number, number] {
  const size = boxSize(width, height);
  return [bounce(frame * 7, width - size), bounce(frame * 5, height - size)];
}

/** The box's colour in a frame (XRGB, X = 0xff). */
export function boxColor(frame: number): number {
  const red = (frame * 37) & 0xff;
  const blue = (255 - ((frame * 53) & 0xff)) & 0xff;
  return (0xff000000 | (red << 16) | (0xff << 8) | blue) >>> 0;
}

/** The background: horizontal red ramp, vertical green ramp, a blue checker. XRGB, X = 0xff. */
export function backgroundPixel(x: number, y: number, width: number, height: number): number {
  const red = width > 1 ? Math.floor((x * 255) / (width - 1)) : 0;
  const green = height > 1 ? Math.floor((y * 255) / (height - 1)) : 0;
  const blue = ((x >> 4) ^ (y >> 4)) & 1 ? 0xc0 : 0x40;
  return (0xff000000 | (red << 16) | (green << 8) | blue) >>> 0;
}

/** The pattern's pixel (XRGB8888 value, X = 0xff) at (x, y) in frame `frame`. */
export function patternPixel(
  x: number,
  y: number,
  frame: number,
  width: number,
  height: number,
): number {
  const size = boxSize(width, height);
  const [bx, by] = boxPosition(frame, width, height);
  if (x >= bx && x < bx + size && y >= by && y < by + size) return boxColor(frame);
  return backgroundPixel(x, y, width, height);
}

/** A deterministic PRNG (mulberry32) so layouts are reproducible from a seed. */
function random32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type PatternLayout = 'scattered' | 'contiguous';

export interface PageLayout {
  /** Guest page of each framebuffer page. */
  pages: Uint32Array;
  /** Pages of "guest RAM" in total (the framebuffer's and others'). */
  totalPages: number;
  /** The backing as a guest would describe it: spans in framebuffer order, some adjacent. */
  ranges: { offset: number; size: number }[];
}

/**
 * Places `framebufferPages` pages in guest RAM. Scattered: RAM has 50% more pages than the
 * framebuffer; the framebuffer is cut into runs of 1..maxRun pages placed in shuffled slots,
 * and each run is described as 1..4-page pieces (adjacent pieces that coalescing merges).
 * Contiguous: one span starting at page `contiguousStart`.
 */
export function layoutPages(
  framebufferPages: number,
  layout: PatternLayout,
  seed = 1,
  maxRun = 24,
  contiguousStart = 3,
): PageLayout {
  if (!Number.isInteger(framebufferPages) || framebufferPages < 1) {
    throw new RangeError(`bad page count ${framebufferPages}`);
  }
  const random = random32(seed);
  const pages = new Uint32Array(framebufferPages);
  if (layout === 'contiguous') {
    // By default start a few pages in, so the buffer offset inside the memfd is not zero.
    const start = contiguousStart;
    for (let i = 0; i < framebufferPages; i++) pages[i] = start + i;
    return {
      pages,
      totalPages: start + framebufferPages + 3,
      ranges: [{ offset: start * PAGE_SIZE, size: framebufferPages * PAGE_SIZE }],
    };
  }
  // Cut into runs.
  const runs: number[] = [];
  for (let left = framebufferPages; left > 0;) {
    const run = Math.min(left, 1 + Math.floor(random() * maxRun));
    runs.push(run);
    left -= run;
  }
  // Slots: each run gets a slot of its length plus a gap; slots are shuffled.
  const totalPages = framebufferPages + Math.ceil(framebufferPages / 2) + runs.length;
  const spare = totalPages - framebufferPages;
  const gaps = runs.map(() => 1 + Math.floor((random() * 2 * (spare - runs.length)) / runs.length));
  const order = runs.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const runStart = new Array<number>(runs.length);
  let cursor = 0;
  for (const index of order) {
    runStart[index] = cursor;
    cursor += runs[index] + gaps[index];
  }
  const total = Math.max(totalPages, cursor);
  const ranges: { offset: number; size: number }[] = [];
  let framebufferPage = 0;
  for (let r = 0; r < runs.length; r++) {
    for (let i = 0; i < runs[r]; i++) pages[framebufferPage + i] = runStart[r] + i;
    for (let i = 0; i < runs[r];) {
      const piece = Math.min(runs[r] - i, 1 + Math.floor(random() * 4));
      ranges.push({ offset: (runStart[r] + i) * PAGE_SIZE, size: piece * PAGE_SIZE });
      i += piece;
    }
    framebufferPage += runs[r];
  }
  return { pages, totalPages: total, ranges };
}

export interface PatternGuestOptions {
  width: number;
  height: number;
  layout?: PatternLayout;
  seed?: number;
  /** Scattered: longest run of adjacent pages (1: every page on its own). Default 24. */
  maxRun?: number;
  /** Contiguous: first page of the framebuffer in the memfd. Default 3. */
  firstPage?: number;
}

/**
 * The pattern's guest RAM and framebuffer. Owns its memfd (closed by close()).
 * XRGB8888, linear, stride = width * 4, framebuffer offset 0 within its pages.
 */
export class PatternGuest {
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly layout: PageLayout;
  readonly memfd: number;
  private readonly ram: ArrayBuffer;
  private readonly words: Uint32Array;
  private closed = false;

  constructor(options: PatternGuestOptions) {
    const { width, height } = options;
    if (!Number.isInteger(width) || width < 1 || width > 16384) {
      throw new RangeError(`bad pattern width ${width}`);
    }
    if (!Number.isInteger(height) || height < 1 || height > 16384) {
      throw new RangeError(`bad pattern height ${height}`);
    }
    this.width = width;
    this.height = height;
    this.stride = width * 4;
    const framebufferPages = Math.ceil((this.stride * height) / PAGE_SIZE);
    this.layout = layoutPages(
      framebufferPages,
      options.layout ?? 'scattered',
      options.seed ?? 1,
      options.maxRun ?? 24,
      options.firstPage ?? 3,
    );
    const memfd = fd.memfdCreate('guestfb-pattern-ram', true);
    try {
      fd.ftruncate(memfd, this.layout.totalPages * PAGE_SIZE);
      // udmabuf requires F_SEAL_SHRINK and refuses F_SEAL_WRITE.
      fd.addSeals(memfd, Seal.SHRINK);
      this.ram = fd.mmap(memfd, 0, this.layout.totalPages * PAGE_SIZE, true);
    } catch (error) {
      fd.close(memfd);
      throw error;
    }
    this.memfd = memfd;
    this.words = new Uint32Array(this.ram);
  }

  /** The framebuffer as the present layer takes it (the memfd is borrowed from this guest). */
  buffer(): GuestBuffer {
    const ranges: BackingRange[] = this.layout.ranges.map((range) => ({
      fd: this.memfd,
      offset: range.offset,
      length: range.size,
    }));
    return {
      width: this.width,
      height: this.height,
      stride: this.stride,
      offset: 0,
      format: DrmFormat.XRGB8888,
      modifier: DRM_FORMAT_MOD_LINEAR,
      ranges,
    };
  }

  /** Writes the pattern of `frame` into the rectangle (clipped by the caller). */
  drawRect(frame: number, x0: number, y0: number, width: number, height: number): void {
    if (this.closed) throw new Error('pattern guest is closed');
    const pages = this.layout.pages;
    const wordsPerPage = PAGE_SIZE / 4;
    const size = boxSize(this.width, this.height);
    const [bx, by] = boxPosition(frame, this.width, this.height);
    const color = boxColor(frame);
    for (let y = y0; y < y0 + height; y++) {
      const rowWord = y * (this.stride / 4);
      const inBoxRow = y >= by && y < by + size;
      const green = this.height > 1 ? Math.floor((y * 255) / (this.height - 1)) : 0;
      let x = x0;
      while (x < x0 + width) {
        // Pixels up to the end of this page map to consecutive RAM words.
        const fbWord = rowWord + x;
        const page = Math.floor(fbWord / wordsPerPage);
        const inPage = fbWord - page * wordsPerPage;
        const runEnd = Math.min(x0 + width, x + (wordsPerPage - inPage));
        let ramWord = pages[page] * wordsPerPage + inPage;
        for (; x < runEnd; x++, ramWord++) {
          if (inBoxRow && x >= bx && x < bx + size) {
            this.words[ramWord] = color;
          } else {
            const red = this.width > 1 ? Math.floor((x * 255) / (this.width - 1)) : 0;
            const blue = ((x >> 4) ^ (y >> 4)) & 1 ? 0xc0 : 0x40;
            this.words[ramWord] = (0xff000000 | (red << 16) | (green << 8) | blue) >>> 0;
          }
        }
      }
    }
  }

  drawFrame(frame: number): void {
    this.drawRect(frame, 0, 0, this.width, this.height);
  }

  /** Reads back the framebuffer pixel at (x, y) through the page layout (tests). */
  pixel(x: number, y: number): number {
    const fbWord = y * (this.stride / 4) + x;
    const wordsPerPage = PAGE_SIZE / 4;
    const page = Math.floor(fbWord / wordsPerPage);
    return this.words[this.layout.pages[page] * wordsPerPage + (fbWord % wordsPerPage)];
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fd.munmap(this.ram);
    fd.close(this.memfd);
  }
}

export interface PatternSourceOptions extends PatternGuestOptions {
  /** Frames per second the box moves and flushes at; 0 means only step() advances it. */
  rate?: number;
  /** Head name (the window title's second part). */
  name?: string;
  /** Frame drawn at creation. */
  firstFrame?: number;
}

type Listeners = { [K in SourceEventName]: Set<SourceListener<K>> };

/** The pattern guest as a FramebufferSource: one head (id 0) showing resource 1. */
export class PatternSource implements FramebufferSource {
  static readonly RESOURCE_ID = 1;
  readonly guest: PatternGuest;
  private readonly head: HeadInfo;
  private readonly resourceInfo: SourceResource;
  private readonly scanoutInfo: ScanoutInfo;
  private readonly listeners: Listeners = {
    headsChanged: new Set(),
    resourceCreated: new Set(),
    backingChanged: new Set(),
    resourceDestroyed: new Set(),
    scanoutSet: new Set(),
    flush: new Set(),
    cursor: new Set(),
    disconnected: new Set(),
  };
  private currentFrame: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly rate: number;
  private readonly counters = { frames: 0, flushes: 0, bytesCopied: 0 };
  /** Reused damage list: the old and the new box. */
  private readonly damage: Rect[] = [
    { x: 0, y: 0, width: 0, height: 0 },
    { x: 0, y: 0, width: 0, height: 0 },
  ];
  private closed = false;

  constructor(options: PatternSourceOptions) {
    const rate = options.rate ?? 60;
    if (!(rate >= 0 && rate <= 1000)) throw new RangeError(`bad pattern rate ${rate}`);
    this.rate = rate;
    this.guest = new PatternGuest(options);
    this.currentFrame = options.firstFrame ?? 0;
    this.guest.drawFrame(this.currentFrame);
    const { width, height, stride } = this.guest;
    const buffer = this.guest.buffer();
    this.head = {
      id: 0,
      width,
      height,
      x: 0,
      y: 0,
      enabled: true,
      name: options.name ?? 'pattern',
    };
    this.resourceInfo = {
      id: PatternSource.RESOURCE_ID,
      kind: '2d',
      fourcc: buffer.format,
      modifier: buffer.modifier,
      width,
      height,
      stride,
      offset: 0,
      size: backingSize(buffer.ranges),
      backing: buffer.ranges,
    };
    this.scanoutInfo = {
      headId: 0,
      resourceId: PatternSource.RESOURCE_ID,
      fourcc: buffer.format,
      modifier: buffer.modifier,
      width,
      height,
      stride,
      offset: 0,
      rect: { x: 0, y: 0, width, height },
    };
  }

  get frame(): number {
    return this.currentFrame;
  }

  /** Starts flushing at `rate` (no-op for rate 0 or when running). */
  start(): void {
    if (this.closed || this.timer || this.rate === 0) return;
    this.timer = setInterval(() => this.step(), 1000 / this.rate);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Moves the box one frame: redraws the old and new box areas and flushes them. */
  step(): void {
    if (this.closed) return;
    const { width, height } = this.guest;
    const size = boxSize(width, height);
    const [oldX, oldY] = boxPosition(this.currentFrame, width, height);
    this.currentFrame++;
    const [newX, newY] = boxPosition(this.currentFrame, width, height);
    const w = Math.min(size, width);
    const h = Math.min(size, height);
    this.guest.drawRect(this.currentFrame, oldX, oldY, w, h);
    this.guest.drawRect(this.currentFrame, newX, newY, w, h);
    setRect(this.damage[0], oldX, oldY, w, h);
    setRect(this.damage[1], newX, newY, w, h);
    this.counters.frames++;
    this.emitFlush(this.damage);
  }

  /** Draws a whole frame into the same pages and flushes everything (no new buffer). */
  showFrame(frame: number): void {
    if (this.closed) return;
    this.currentFrame = frame;
    this.guest.drawFrame(frame);
    this.counters.frames++;
    this.emitFlush([{ x: 0, y: 0, width: this.guest.width, height: this.guest.height }]);
  }

  /**
   * Moves the guest cursor to (x, y) on the head; `image` replaces it (null hides it, undefined
   * keeps it), like virtio-gpu's UPDATE_CURSOR / MOVE_CURSOR.
   */
  setCursor(x: number, y: number, image?: CursorImage | null): void {
    if (this.closed) return;
    const update: CursorUpdate = { headId: 0, x, y };
    if (image !== undefined) update.image = image;
    for (const listener of this.listeners.cursor) listener(update);
  }

  private emitFlush(damage: readonly Rect[]): void {
    this.counters.flushes++;
    for (const listener of this.listeners.flush) listener(0, damage);
  }

  on<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    (this.listeners[event] as Set<SourceListener<K>>).add(listener);
    return this;
  }

  off<K extends SourceEventName>(event: K, listener: SourceListener<K>): this {
    (this.listeners[event] as Set<SourceListener<K>>).delete(listener);
    return this;
  }

  heads(): readonly HeadInfo[] {
    return this.closed ? [] : [this.head];
  }

  resource(id: number): SourceResource | undefined {
    return !this.closed && id === PatternSource.RESOURCE_ID ? this.resourceInfo : undefined;
  }

  scanout(headId: number): ScanoutInfo | null {
    return !this.closed && headId === 0 ? this.scanoutInfo : null;
  }

  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean {
    if (this.closed || resourceId !== PatternSource.RESOURCE_ID) return false;
    const { width, height } = this.guest;
    const { x, y, width: w, height: h } = rect;
    if (![x, y, w, h].every(Number.isInteger) || x < 0 || y < 0 || w < 1 || h < 1) return false;
    if (x + w > width || y + h > height || target.byteLength < w * h * 4) return false;
    const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
    for (let row = 0; row < h; row++) {
      for (let col = 0; col < w; col++) {
        view.setUint32((row * w + col) * 4, this.guest.pixel(x + col, y + row), true);
      }
    }
    this.counters.bytesCopied += w * h * 4;
    return true;
  }

  stats(): SourceStats {
    return { ...this.counters };
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    for (const listener of this.listeners.disconnected) listener('pattern source closed');
    this.guest.close();
  }
}

function setRect(rect: Rect, x: number, y: number, width: number, height: number): void {
  rect.x = x;
  rect.y = y;
  rect.width = width;
  rect.height = height;
}

/** A cursor image of one ARGB8888 colour (tests and demos). */
export function solidCursor(
  width: number,
  height: number,
  argb: number,
  hotX = 0,
  hotY = 0,
): CursorImage {
  const pixels = new Uint8Array(width * height * 4);
  const view = new DataView(pixels.buffer);
  for (let i = 0; i < width * height; i++) view.setUint32(i * 4, argb >>> 0, true);
  return { resourceId: 0, hotX, hotY, width, height, fourcc: DrmFormat.ARGB8888, pixels };
}

export function createPatternSource(options: PatternSourceOptions): PatternSource {
  return new PatternSource(options);
}
