/**
 * The scene: outputs side by side in one global space, windows (mapped toplevel surface trees)
 * stacked bottom to top, the pointer's cursor image on top of them (a surface with the cursor
 * role, drawn at the pointer position minus its hotspot, as a compositor shows a client's
 * wl_pointer.set_cursor), damage tracking in global coordinates, and the per-output render tick
 * that composes damage, paces frame callbacks at the output's refresh rate, reports presentation
 * feedback with the tick's CLOCK_MONOTONIC time, and releases replaced buffers.
 */
import { OutputImage, composeRegion, layerBounds, type SceneLayer } from '../render/compose.js';
import { Region, intersectRects, isEmptyRect, type Rect } from '../render/region.js';
import type { CommitResult, Surface } from './surface.js';

export interface OutputConfig {
  name: string;
  width: number;
  height: number;
  /** Refresh rate in millihertz (wl_output.mode), e.g. 60000. */
  refreshMhz: number;
  description?: string;
}

/** wp_presentation_feedback.kind */
export const PresentationKind = {
  VSYNC: 1,
  HW_CLOCK: 2,
  HW_COMPLETION: 4,
  ZERO_COPY: 8,
} as const;

export class Output {
  readonly image: OutputImage;
  readonly damage: Region;
  /** Position in the global space (outputs are laid out left to right). */
  x = 0;
  readonly y = 0;
  /** Render ticks so far (the presentation sequence counter). */
  sequence = 0n;
  /** Ticks that recomposed something. */
  repaints = 0;
  readonly refreshNs: number;
  lastTickNs = 0n;
  private timer: NodeJS.Timeout | null = null;
  private nextTickNs = 0n;

  constructor(readonly config: OutputConfig) {
    if (!/^[\w.-]{1,64}$/.test(config.name))
      throw new Error(`invalid output name "${config.name}"`);
    if (
      !Number.isInteger(config.refreshMhz) ||
      config.refreshMhz < 1000 ||
      config.refreshMhz > 1000000
    ) {
      throw new RangeError(`refresh ${config.refreshMhz} mHz outside 1..1000 Hz`);
    }
    this.image = new OutputImage(config.width, config.height);
    this.damage = Region.of({ x: 0, y: 0, width: config.width, height: config.height });
    this.refreshNs = Math.round(1e12 / config.refreshMhz);
  }

  get name(): string {
    return this.config.name;
  }

  bounds(): Rect {
    return { x: this.x, y: this.y, width: this.config.width, height: this.config.height };
  }

  /** Starts ticking at the refresh rate on a drift-free schedule. */
  start(onTick: (output: Output, nowNs: bigint) => void): void {
    if (this.timer) return;
    this.nextTickNs = process.hrtime.bigint() + BigInt(this.refreshNs);
    const schedule = (): void => {
      const now = process.hrtime.bigint();
      const delayMs = Math.max(0, Number(this.nextTickNs - now) / 1e6);
      this.timer = setTimeout(() => {
        const tickNs = process.hrtime.bigint();
        // Timers may fire a little early: this firing is the tick due at nextTickNs, so always
        // advance at least one period; skip missed ticks instead of bursting to catch up.
        do this.nextTickNs += BigInt(this.refreshNs);
        while (this.nextTickNs <= tickNs);
        this.lastTickNs = tickNs;
        this.sequence++;
        onTick(this, tickNs);
        if (this.timer) schedule();
      }, delayMs);
    };
    schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

export interface Window {
  surface: Surface;
  x: number;
  y: number;
  /** Global rectangles the window tree covered when last laid out (for damage on change). */
  bounds: Region;
}

export interface SceneOptions {
  background?: number;
  log?: (message: string) => void;
  /** Runs after an output's tick recomposed (for periodic screenshots). */
  afterRender?: (output: Output) => void;
}

/** The image the pointer shows: a cursor-role surface tree and its hotspot. */
export interface CursorImage {
  surface: Surface;
  hotX: number;
  hotY: number;
}

const CASCADE_STEP = 32;

export class Scene {
  readonly outputs: Output[] = [];
  readonly windows: Window[] = [];
  readonly surfaces = new Set<Surface>();
  readonly background: number;
  private cascadeIndex = 0;
  /** The pointer's position (global) and the image drawn there (null: none). */
  private pointer = { x: 0, y: 0 };
  private cursorImage: CursorImage | null = null;
  /** Global rectangles the cursor covered when last drawn (for damage when it moves). */
  private cursorBounds = new Region();
  private readonly log: (message: string) => void;
  private running = false;
  /** Frame callbacks sent so far (all surfaces), for tests and stats. */
  frameCallbacksDone = 0;

  constructor(
    configs: OutputConfig[],
    private readonly options: SceneOptions = {},
  ) {
    if (configs.length === 0) throw new Error('at least one output is needed');
    let x = 0;
    for (const config of configs) {
      if (this.outputs.some((o) => o.name === config.name)) {
        throw new Error(`duplicate output name ${config.name}`);
      }
      const output = new Output(config);
      output.x = x;
      x += config.width;
      this.outputs.push(output);
    }
    this.background = options.background ?? 0x202830;
    this.log = options.log ?? (() => {});
  }

  output(name: string): Output | undefined {
    return this.outputs.find((o) => o.name === name);
  }

  start(): void {
    this.running = true;
    for (const output of this.outputs) output.start((o, now) => this.tick(o, now));
  }

  stop(): void {
    this.running = false;
    for (const output of this.outputs) output.stop();
  }

  // --- surfaces and windows ------------------------------------------------------------------

  addSurface(surface: Surface): void {
    this.surfaces.add(surface);
    surface.onApplied((s, result) => this.surfaceApplied(s, result));
  }

  removeSurface(surface: Surface): void {
    if (this.cursorImage) {
      let root = surface;
      while (root.parent) root = root.parent;
      if (root === this.cursorImage.surface) {
        if (surface === root) this.setCursor(null);
        else this.cursorChanged();
      }
    }
    const window = this.windowOf(surface);
    if (window) {
      if (window.surface === surface) this.unmapWindow(surface);
      else this.relayout(window);
    }
    this.surfaces.delete(surface);
  }

  /** Maps a toplevel at the next cascade position on the first output. */
  mapWindow(surface: Surface): Window {
    const existing = this.windows.find((w) => w.surface === surface);
    if (existing) return existing;
    const primary = this.outputs[0];
    const size = surface.size();
    const span = Math.max(
      1,
      Math.floor(Math.min(primary.config.width, primary.config.height) / 2 / CASCADE_STEP),
    );
    const step = (this.cascadeIndex++ % span) + 1;
    let x = primary.x + step * CASCADE_STEP;
    let y = primary.y + step * CASCADE_STEP;
    // Keep it on screen when it fits.
    if (x + size.width > primary.x + primary.config.width)
      x = primary.x + Math.max(0, primary.config.width - size.width);
    if (y + size.height > primary.config.height)
      y = Math.max(0, primary.config.height - size.height);
    const window: Window = { surface, x, y, bounds: new Region() };
    this.windows.push(window);
    this.relayout(window);
    return window;
  }

  unmapWindow(surface: Surface): void {
    const index = this.windows.findIndex((w) => w.surface === surface);
    if (index < 0) return;
    const [window] = this.windows.splice(index, 1);
    this.damageGlobal(window.bounds);
  }

  /** Raises a window to the top of the stack. */
  raise(surface: Surface): void {
    const index = this.windows.findIndex((w) => w.surface === surface);
    if (index < 0 || index === this.windows.length - 1) return;
    const [window] = this.windows.splice(index, 1);
    this.windows.push(window);
    this.damageGlobal(window.bounds);
  }

  // --- the pointer's cursor --------------------------------------------------------------------

  /** The cursor image shown at the pointer (null: none). */
  get cursor(): CursorImage | null {
    return this.cursorImage;
  }

  /** Where the pointer is, in global coordinates. */
  get pointerPosition(): { x: number; y: number } {
    return { ...this.pointer };
  }

  /** Shows `image` at the pointer (null hides it); damages where the old and new ones are. */
  setCursor(image: CursorImage | null): void {
    this.cursorImage = image ? { ...image } : null;
    this.cursorChanged();
  }

  /** Moves the hotspot by (-dx, -dy): wl_surface.offset or attach's x/y on a cursor surface. */
  moveCursorHotspot(dx: number, dy: number): void {
    if (!this.cursorImage || (dx === 0 && dy === 0)) return;
    this.cursorImage.hotX -= dx;
    this.cursorImage.hotY -= dy;
    this.cursorChanged();
  }

  /** Moves the pointer (global coordinates); the cursor image follows it. */
  movePointer(x: number, y: number): void {
    if (x === this.pointer.x && y === this.pointer.y) return;
    this.pointer = { x, y };
    if (this.cursorImage) this.cursorChanged();
  }

  /** Top-left corner of the cursor surface (the pointer minus the hotspot). */
  private cursorOrigin(image: CursorImage): { x: number; y: number } {
    return { x: this.pointer.x - image.hotX, y: this.pointer.y - image.hotY };
  }

  /** The cursor's image, place or content changed: damage where it was and where it is. */
  private cursorChanged(): void {
    const image = this.cursorImage;
    let bounds = new Region();
    if (image) {
      const origin = this.cursorOrigin(image);
      bounds = this.surfaceTreeBounds(image.surface, origin.x, origin.y);
    }
    this.damageGlobal(this.cursorBounds);
    this.damageGlobal(bounds);
    this.cursorBounds = bounds;
  }

  /** The window whose tree holds `surface`. */
  windowOf(surface: Surface): Window | undefined {
    let root = surface;
    while (root.parent) root = root.parent;
    return this.windows.find((w) => w.surface === root);
  }

  /** Global position of a surface in a mapped tree. */
  positionOf(surface: Surface): { x: number; y: number } | null {
    let x = 0;
    let y = 0;
    let node = surface;
    while (node.parent) {
      const link = node.parent.linkOf(node);
      if (!link) return null;
      x += link.x;
      y += link.y;
      node = node.parent;
    }
    if (this.cursorImage?.surface === node) {
      const origin = this.cursorOrigin(this.cursorImage);
      return { x: origin.x + x, y: origin.y + y };
    }
    const window = this.windows.find((w) => w.surface === node);
    return window ? { x: window.x + x, y: window.y + y } : null;
  }

  /** The surfaces of every window as render layers, bottom to top, in global coordinates; the
   * cursor image last (on top). */
  layers(): SceneLayer[] {
    const layers: SceneLayer[] = [];
    const walk = (surface: Surface, x: number, y: number): void => {
      for (const entry of surface.stack) {
        if (entry === 'self') {
          const geometry = surface.geometry();
          if (surface.content && geometry) layers.push({ buffer: surface.content, x, y, geometry });
        } else {
          walk(entry.surface, x + entry.x, y + entry.y);
        }
      }
    };
    for (const window of this.windows) walk(window.surface, window.x, window.y);
    if (this.cursorImage) {
      const origin = this.cursorOrigin(this.cursorImage);
      walk(this.cursorImage.surface, origin.x, origin.y);
    }
    return layers;
  }

  private treeBounds(window: Window): Region {
    return this.surfaceTreeBounds(window.surface, window.x, window.y);
  }

  private surfaceTreeBounds(root: Surface, rootX: number, rootY: number): Region {
    const region = new Region();
    const walk = (surface: Surface, x: number, y: number): void => {
      for (const entry of surface.stack) {
        if (entry === 'self') {
          const size = surface.size();
          if (surface.content) region.add({ x, y, ...size });
        } else {
          walk(entry.surface, x + entry.x, y + entry.y);
        }
      }
    };
    walk(root, rootX, rootY);
    return region.simplify();
  }

  /** A surface tree changed shape (a subsurface came or went): damage old and new bounds. */
  treeChanged(surface: Surface): void {
    let root = surface;
    while (root.parent) root = root.parent;
    if (root === this.cursorImage?.surface) {
      this.cursorChanged();
      return;
    }
    const window = this.windowOf(surface);
    if (window) this.relayout(window);
  }

  private relayout(window: Window): void {
    const bounds = this.treeBounds(window);
    this.damageGlobal(window.bounds);
    this.damageGlobal(bounds);
    window.bounds = bounds;
  }

  private surfaceApplied(surface: Surface, result: CommitResult): void {
    const cursor = this.cursorImage;
    if (cursor) {
      let root = surface;
      while (root.parent) root = root.parent;
      if (root === cursor.surface) {
        // A cursor is small: its whole old and new area is damaged on every commit.
        if (surface === root && (result.dx !== 0 || result.dy !== 0)) {
          this.moveCursorHotspot(result.dx, result.dy);
        } else {
          this.cursorChanged();
        }
        return;
      }
    }
    const window = this.windowOf(surface);
    if (!window) return;
    if (window.surface === surface && (result.dx !== 0 || result.dy !== 0)) {
      window.x += result.dx;
      window.y += result.dy;
    }
    const position = this.positionOf(surface);
    if (
      result.geometryChanged ||
      surface.stack.length > 1 ||
      result.dx !== 0 ||
      result.dy !== 0 ||
      !position
    ) {
      this.relayout(window);
      return;
    }
    const size = surface.size();
    const damage = result.damage
      .clone()
      .intersectRect({ x: 0, y: 0, ...size })
      .translate(position.x, position.y);
    this.damageGlobal(damage);
  }

  /** Adds global damage to every output it touches. */
  damageGlobal(region: Region): void {
    for (const output of this.outputs) {
      const bounds = output.bounds();
      for (const r of region.rectangles) {
        const overlap = intersectRects(r, bounds);
        if (!isEmptyRect(overlap)) {
          output.damage.add({ ...overlap, x: overlap.x - output.x, y: overlap.y - output.y });
        }
      }
      output.damage.simplify();
    }
  }

  damageEverything(): void {
    for (const output of this.outputs) output.damage.add({ x: 0, y: 0, ...output.image });
  }

  /** The output whose area holds the surface's window origin (the primary one otherwise). */
  outputOf(surface: Surface): Output {
    const position = this.positionOf(surface);
    if (position) {
      const found = this.outputs.find(
        (o) => position.x >= o.x && position.x < o.x + o.config.width,
      );
      if (found) return found;
    }
    return this.outputs[0];
  }

  /** Composes one output's damage now (also used for on-demand screenshots). */
  render(output: Output): void {
    if (output.damage.isEmpty()) return;
    const layers = this.layers()
      .map((layer) => ({ ...layer, x: layer.x - output.x, y: layer.y - output.y }))
      .filter(
        (layer) =>
          !isEmptyRect(intersectRects(layerBounds(layer), { x: 0, y: 0, ...output.image })),
      );
    const stats = composeRegion(output.image, layers, output.damage, this.background);
    if (stats.skippedLayers > 0)
      this.log(`render: ${stats.skippedLayers} unreadable surface(s) skipped`);
    output.damage.clear();
    output.repaints++;
  }

  /** One refresh of one output. */
  tick(output: Output, nowNs: bigint): void {
    const repainted = !output.damage.isEmpty();
    this.render(output);
    if (repainted) this.options.afterRender?.(output);
    const timeMs = Number((nowNs / 1000000n) & 0xffffffffn);
    const visible = new Set(this.layers().map((layer) => layer.buffer));
    for (const surface of [...this.surfaces]) {
      if (this.outputOf(surface) !== output) continue;
      const feedbacks = surface.takeFeedbacks();
      const shown = surface.content !== null && visible.has(surface.content);
      for (const feedback of feedbacks) {
        if (shown) {
          feedback.presented({
            timeNs: nowNs,
            refreshNs: output.refreshNs,
            sequence: output.sequence,
            flags: PresentationKind.VSYNC,
            outputName: output.name,
          });
        } else {
          feedback.discarded();
        }
      }
      const pending = surface.frameCallbacks.length;
      if (pending > 0) {
        this.frameCallbacksDone += pending;
        surface.sendFrameDone(timeMs);
      }
      surface.releaseReplaced();
    }
  }

  get isRunning(): boolean {
    return this.running;
  }
}
