/**
 * The KMS backend of the example compositor: one output on a DRM device, driven with atomic
 * commits, paced by page-flip events. Each frame either puts a client's dma-buf straight on the
 * primary plane (PRIME import + AddFB2, checked with a TEST_ONLY commit) or composes the scene in
 * software into one of two dumb buffers and flips that. Frame callbacks and presentation feedback
 * follow the flips. The KMS state found at start is put back on close.
 *
 * Seat-less: it needs DRM master (root on a VT without another compositor, or a test device such
 * as vkms). Ownership: the backend owns the device it opened (not one handed in), its dumb
 * buffers, framebuffers, GEM handles and the mode blob, and releases them all in close().
 * The cursor plane (cursor-plane.ts) and writeback capture (writeback.ts) are parts it drives.
 */
import { statSync } from 'node:fs';
import { fd } from '../../../native/fd.js';
import {
  AtomicFlag,
  AtomicRequest,
  Cap,
  DRM_EVENT_FLIP_COMPLETE,
  DrmDevice,
  type DrmConnector,
  type DrmPlane,
} from '../../../native/drm.js';
import { DRM_FORMAT_MOD_LINEAR, DrmFormat } from '../../../plugin/common/formats.js';
import type { Output, OutputConfig, Scene } from '../core/scene.js';
import { PresentationKind } from '../core/scene.js';
import type { FrameCallbackSink, PresentationSink, Surface } from '../core/surface.js';
import type { FeedbackFdOps } from '../dmabuf/feedback.js';
import { fourccName, type FormatModifierSet } from '../dmabuf/formats.js';
import { Region } from '../render/region.js';
import { CursorPlane } from './cursor-plane.js';
import { createDumbFramebuffer, destroyDumbFramebuffer, type DumbFramebuffer } from './dumb.js';
import { ScanoutFeedback } from './feedback.js';
import { FramebufferCache, isDmabufBuffer } from './framebuffers.js';
import { restoreKmsState, saveKmsState, type SavedKmsState } from './kms-state.js';
import {
  chooseScanout,
  planeFormatSet,
  type CursorCandidate,
  type FixedRect,
  type PlaneFormats,
  type ScanoutDecision,
} from './scanout.js';
import { modeRefreshMhz, selectKms, type KmsSelection, type ModeRequest } from './select.js';
import { WritebackCapture, type AttachedCapture } from './writeback.js';

export interface DrmBackendOptions {
  /** A card node path ("/dev/dri/card0"), a driver name ("vkms"), or an open device (borrowed:
   * the backend does not close it). */
  device: string | DrmDevice;
  /** Connector name ("Virtual-1") or type ("Writeback"); default: the first connected one. */
  connector?: string;
  /** Mode size (and refresh); default: the connector's preferred mode. */
  mode?: ModeRequest;
  /** Logs one line per frame with the path taken (direct scanout or composition). */
  debugFrames?: boolean;
}

export interface DrmBackendStats {
  device: string;
  connector: string;
  mode: string;
  /** Frames whose primary plane showed a client buffer. */
  directScanoutFrames: number;
  /** Frames composed in software into a dumb buffer. */
  composedFrames: number;
  /** Flips that showed the previous composed frame again (nothing changed, callbacks due). */
  repeatedFrames: number;
  flips: number;
  /** Direct frames that also showed a surface on the cursor plane. */
  cursorPlaneFrames: number;
  /** TEST_ONLY commits the kernel refused (each then composed). */
  planeTestFailures: number;
  lastPath: 'direct' | 'composed' | 'none';
  /** Why the last composed frame was not scanned out directly. */
  lastComposeReason: string | null;
  /** Client framebuffers held (cached, or of destroyed buffers until they leave the screen). */
  framebuffers: number;
}

interface SurfaceFrame {
  surface: Surface;
  /** What the frame showed of the surface. */
  content: Surface['content'];
  callbacks: FrameCallbackSink[];
  feedbacks: PresentationSink[];
  shown: boolean;
  zeroCopy: boolean;
}

interface PendingFrame {
  fbId: number;
  surfaces: SurfaceFrame[];
}

/** DRM_CAP_CURSOR_WIDTH / HEIGHT (the kernel answers 64 when the driver says nothing). */
const CAP_CURSOR_WIDTH = 0x8;
const CAP_CURSOR_HEIGHT = 0x9;

function formatsOf(plane: DrmPlane): PlaneFormats {
  return planeFormatSet(
    plane.inFormats ?? plane.formats.map((format) => ({ format, modifier: DRM_FORMAT_MOD_LINEAR })),
  );
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Opens by path, or the first card whose driver has that name. */
function openDevice(spec: string): { device: DrmDevice; path: string } {
  if (spec.startsWith('/')) return { device: DrmDevice.open(spec), path: spec };
  for (const cardPath of DrmDevice.cardPaths()) {
    const device = DrmDevice.open(cardPath);
    let name: string;
    try {
      name = device.version().name;
    } catch (error) {
      device.close();
      throw error;
    }
    if (name === spec) return { device, path: cardPath };
    device.close();
  }
  throw new Error(`no DRM card with driver "${spec}" under /dev/dri`);
}

export class DrmBackend {
  readonly outputConfig: OutputConfig;
  /** dev_t of the card node (linux-dmabuf main_device). */
  readonly deviceId: bigint;
  readonly selection: KmsSelection;
  readonly primaryFormats: PlaneFormats;
  private readonly savedState: SavedKmsState;
  private readonly modeBlob: number;
  private readonly buffers: DumbFramebuffer[] = [];
  /** The cursor plane, when the CRTC has one (cursor-plane.ts). */
  private readonly cursorPlane: CursorPlane | null = null;
  /** Captures of a writeback connector (writeback.ts), made on the first capture(). */
  private writeback: WritebackCapture | null = null;
  private readonly framebuffers: FramebufferCache;
  private scene: Scene | null = null;
  private output: Output | null = null;
  private unwatch: (() => void) | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private pending: PendingFrame | null = null;
  private onScreenFb = 0;
  /** Index of the dumb buffer on screen (-1 when a client buffer is). */
  private frontBuffer = -1;
  /** Damage kept while frames bypass composition (the output image is behind by this much). */
  private readonly deferredDamage = new Region();
  private lastReason: string | null = null;
  private lastLoggedPath = '';
  private frameNumber = 0;
  private closed = false;
  private readonly counters = {
    directScanoutFrames: 0,
    composedFrames: 0,
    repeatedFrames: 0,
    cursorPlaneFrames: 0,
    flips: 0,
    planeTestFailures: 0,
  };
  private lastPath: DrmBackendStats['lastPath'] = 'none';

  private constructor(
    private readonly device: DrmDevice,
    private readonly ownsDevice: boolean,
    private readonly devicePath: string,
    private readonly options: DrmBackendOptions,
    private readonly log: (message: string) => void,
  ) {
    device.enableAtomic(true);
    if (device.getCap(Cap.DUMB_BUFFER) === 0n) throw new Error('the device has no dumb buffers');
    this.savedState = saveKmsState(device);
    const connectors = device.connectors();
    this.selection = selectKms(connectors, device.crtcs(), device.planes(), {
      connector: options.connector,
      mode: options.mode,
    });
    const { connector, mode, crtc, primary } = this.selection;
    this.deviceId = statSync(`/proc/self/fd/${device.fd}`, { bigint: true }).rdev;
    this.primaryFormats = formatsOf(primary);
    if (this.selection.cursor) {
      this.cursorPlane = new CursorPlane(
        device,
        this.selection.cursor,
        crtc.id,
        formatsOf(this.selection.cursor),
        {
          width: Number(device.getCap(CAP_CURSOR_WIDTH)),
          height: Number(device.getCap(CAP_CURSOR_HEIGHT)),
        },
      );
    }
    const refreshMhz = Math.min(1_000_000, Math.max(1000, modeRefreshMhz(mode)));
    this.outputConfig = {
      name: connector.name,
      width: mode.hdisplay,
      height: mode.vdisplay,
      refreshMhz,
      description: `${connector.name} on ${device.version().name} (${devicePath})`,
    };
    this.framebuffers = new FramebufferCache(
      device,
      (fbId) => fbId === this.onScreenFb || fbId === this.pending?.fbId,
      log,
    );
    this.modeBlob = device.createModeBlob(mode);
    try {
      for (let i = 0; i < 2; i++) this.buffers.push(this.createDumbFramebuffer());
    } catch (error) {
      this.releaseDumbBuffers();
      device.destroyBlob(this.modeBlob);
      throw error;
    }
    log(
      `drm: ${this.outputConfig.description}: ${mode.name} ${refreshMhz / 1000} Hz, CRTC ${crtc.id}, ` +
        `primary plane ${primary.id}` +
        (this.selection.cursor ? `, cursor plane ${this.selection.cursor.id}` : '') +
        (this.selection.overlays.length > 0
          ? `, overlay planes ${this.selection.overlays.map((p) => p.id).join(' ')}`
          : ''),
    );
  }

  /** Opens the device, saves its KMS state and picks connector, mode, CRTC and planes. */
  static open(options: DrmBackendOptions, log: (message: string) => void): DrmBackend {
    const opened =
      typeof options.device === 'string'
        ? { ...openDevice(options.device), owns: true }
        : { device: options.device, path: `fd ${options.device.fd}`, owns: false };
    try {
      return new DrmBackend(opened.device, opened.owns, opened.path, options, log);
    } catch (error) {
      if (opened.owns) opened.device.close();
      throw error;
    }
  }

  get connector(): DrmConnector {
    return this.selection.connector;
  }

  /** Feedback whose main device is this card, with a scanout tranche for the primary plane. */
  createFeedback(formats: FormatModifierSet, fdOps: FeedbackFdOps): ScanoutFeedback {
    return new ScanoutFeedback(formats, this.deviceId, this.primaryFormats, fdOps);
  }

  /** Takes over `output` (its headless timer stops) and sets the mode with a first frame. */
  start(scene: Scene, output: Output): void {
    if (this.scene) throw new Error('the DRM backend is already started');
    if (output.config.width !== this.outputConfig.width) {
      throw new Error(`output ${output.name} does not have the DRM mode's size`);
    }
    this.scene = scene;
    this.output = output;
    output.stop();
    this.unwatch = fd.watchReadable(this.device.fd, (error) => {
      if (error) {
        this.log(`drm: event wait failed: ${error.message}`);
        return;
      }
      this.readEvents();
    });
    this.frame(true);
  }

  /**
   * The next frame as the writeback connector captured it: width × height XRGB8888, tightly
   * packed. Only when the backend drives a writeback connector.
   */
  capture(): Promise<Uint8Array> {
    if (!this.connector.writeback) {
      return Promise.reject(new Error(`${this.connector.name} is not a writeback connector`));
    }
    if (this.closed) return Promise.reject(new Error('the DRM backend is closed'));
    const { width, height } = this.outputConfig;
    this.writeback ??= new WritebackCapture(this.device, this.connector, width, height, () =>
      this.wake(),
    );
    const captured = this.writeback.request();
    this.wake();
    return captured;
  }

  /** Before a screenshot: the output image must catch up with frames that bypassed it. */
  prepareScreenshot(): void {
    const output = this.output;
    if (!output || this.deferredDamage.isEmpty()) return;
    output.damage.union(this.deferredDamage).simplify();
    this.deferredDamage.clear();
  }

  stats(): DrmBackendStats {
    const { mode } = this.selection;
    return {
      device: this.devicePath,
      connector: this.connector.name,
      mode: `${mode.hdisplay}x${mode.vdisplay}@${this.outputConfig.refreshMhz / 1000}`,
      ...this.counters,
      lastPath: this.lastPath,
      lastComposeReason: this.lastReason,
      framebuffers: this.framebuffers.size,
    };
  }

  /** Restores the KMS state found at start, then frees everything. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.unwatch?.();
    this.unwatch = null;
    this.writeback?.rejectAll(new Error('the DRM backend closed'));
    try {
      // Blocking: waits for a queued flip, then puts the saved state back.
      restoreKmsState(this.device, this.savedState);
      this.log('drm: KMS state restored');
    } catch (error) {
      this.log(`drm: restoring the KMS state failed: ${errorText(error)}; switching the CRTC off`);
      try {
        this.commit(this.offRequest(), AtomicFlag.ALLOW_MODESET);
      } catch (offError) {
        this.log(`drm: switching off failed too: ${errorText(offError)}`);
      }
    }
    try {
      this.device.readEvents(); // drop a flip event still queued for us
    } catch {
      // nothing queued
    }
    this.pending = null;
    this.onScreenFb = 0;
    this.framebuffers.close();
    this.releaseDumbBuffers();
    try {
      this.device.destroyBlob(this.modeBlob);
    } catch (error) {
      this.log(`drm: destroying the mode blob failed: ${errorText(error)}`);
    }
    if (this.ownsDevice) this.device.close();
  }

  // --- frames -------------------------------------------------------------------------------

  /** A frame-sized XRGB8888 dumb buffer to compose into. */
  private createDumbFramebuffer(): DumbFramebuffer {
    const { hdisplay, vdisplay } = this.selection.mode;
    return createDumbFramebuffer(this.device, hdisplay, vdisplay, DrmFormat.XRGB8888);
  }

  private releaseDumbBuffers(): void {
    for (const buffer of this.buffers.splice(0)) {
      destroyDumbFramebuffer(this.device, buffer, this.log);
    }
    this.cursorPlane?.release(this.log);
    this.writeback?.release(this.log);
  }

  /** Planes other than the primary that sit on our CRTC go off; other connectors leave it. */
  private modesetRequest(): AtomicRequest {
    const { connector, crtc, primary } = this.selection;
    const request = new AtomicRequest()
      .set(crtc, 'MODE_ID', this.modeBlob)
      .set(crtc, 'ACTIVE', 1)
      .set(connector, 'CRTC_ID', crtc.id);
    for (const other of this.device.connectors()) {
      if (other.id === connector.id) continue;
      if (Number(other.properties.get('CRTC_ID')?.value ?? 0n) === crtc.id) {
        request.set(other, 'CRTC_ID', 0);
      }
    }
    for (const plane of this.device.planes()) {
      if (plane.id === primary.id) continue;
      if (Number(plane.properties.get('CRTC_ID')?.value ?? 0n) === crtc.id) {
        request.set(plane, 'FB_ID', 0).set(plane, 'CRTC_ID', 0);
      }
    }
    return request;
  }

  private offRequest(): AtomicRequest {
    const { connector, crtc, primary } = this.selection;
    return new AtomicRequest()
      .set(primary, 'FB_ID', 0)
      .set(primary, 'CRTC_ID', 0)
      .set(connector, 'CRTC_ID', 0)
      .set(crtc, 'ACTIVE', 0)
      .set(crtc, 'MODE_ID', 0);
  }

  private setPrimary(
    request: AtomicRequest,
    plane: DrmPlane,
    fbId: number,
    source: FixedRect,
    destination: { x: number; y: number; width: number; height: number },
  ): AtomicRequest {
    return request
      .set(plane, 'FB_ID', fbId)
      .set(plane, 'CRTC_ID', this.selection.crtc.id)
      .set(plane, 'SRC_X', source.x)
      .set(plane, 'SRC_Y', source.y)
      .set(plane, 'SRC_W', source.width)
      .set(plane, 'SRC_H', source.height)
      .set(plane, 'CRTC_X', destination.x)
      .set(plane, 'CRTC_Y', destination.y)
      .set(plane, 'CRTC_W', destination.width)
      .set(plane, 'CRTC_H', destination.height);
  }

  private commit(request: AtomicRequest, flags: number): number[] {
    return this.device.commit(request, flags);
  }

  /** Whether anything is due: damage, frame callbacks, feedback, or a capture. */
  private hasWork(): boolean {
    const scene = this.scene!;
    const output = this.output!;
    if (this.writeback?.due) return true;
    if (!output.damage.isEmpty()) return true;
    for (const surface of scene.surfaces) {
      if (surface.frameCallbacks.length === 0 && surface.feedbacks.length === 0) continue;
      if (scene.outputOf(surface) === output) return true;
    }
    return false;
  }

  /** Builds and commits a frame now if one is due and none is queued; else polls while idle. */
  private wake(): void {
    if (this.closed || !this.scene || this.pending) return;
    if (this.hasWork()) {
      this.frame(false);
      return;
    }
    if (this.idleTimer) return;
    const periodMs = Math.max(1, this.output!.refreshNs / 2e6);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.wake();
    }, periodMs);
  }

  private decide(): { decision: ScanoutDecision; cursor: CursorCandidate | null } {
    const output = this.output!;
    const all = this.scene!.layers().map((layer) => ({
      ...layer,
      x: layer.x - output.x,
      y: layer.y - output.y,
    }));
    const { cursor, rest: layers } = this.cursorPlane
      ? this.cursorPlane.split(all, output.config.width, output.config.height)
      : { cursor: null, rest: all };
    const decision = chooseScanout(
      layers,
      output.config.width,
      output.config.height,
      (layer) =>
        isDmabufBuffer(layer.buffer)
          ? { format: layer.buffer.format, modifier: layer.buffer.modifier }
          : null,
      this.primaryFormats,
    );
    // The cursor plane only joins a direct frame; a composed frame draws the cursor itself.
    return { decision, cursor: decision.kind === 'direct' ? cursor : null };
  }

  /** The framebuffer to scan out for a direct decision, or why the frame must be composed. */
  private directFramebuffer(
    decision: ScanoutDecision,
    cursor: CursorCandidate | null,
  ): number | string {
    if (decision.kind !== 'direct') return decision.reason;
    const buffer = decision.layer.buffer;
    if (!isDmabufBuffer(buffer)) return 'buffer is not a dma-buf';
    const entry = this.framebuffers.get(buffer);
    if (typeof entry === 'string') return entry;
    // Cursor positions vary per frame: the test covers its size and whether it is inside.
    const cursorKey = cursor
      ? [
          cursor.width,
          cursor.height,
          cursor.layer.x >= 0 &&
            cursor.layer.y >= 0 &&
            cursor.layer.x + cursor.width <= this.outputConfig.width &&
            cursor.layer.y + cursor.height <= this.outputConfig.height,
        ]
      : null;
    const key = JSON.stringify([decision.source, decision.destination, cursorKey]);
    let verdict = entry.tested.get(key);
    if (verdict === undefined) {
      const request = this.setPrimary(
        new AtomicRequest(),
        this.selection.primary,
        entry.fbId,
        decision.source,
        decision.destination,
      );
      if (cursor && this.cursorPlane) {
        this.cursorPlane.set(request, cursor, this.cursorPlane.testFramebuffer(cursor));
      }
      try {
        this.commit(request, AtomicFlag.TEST_ONLY);
        verdict = null;
      } catch (error) {
        this.counters.planeTestFailures++;
        verdict =
          `plane test refused fb ${entry.fbId} (${buffer.width}x${buffer.height} ` +
          `${fourccName(buffer.format)}${cursor ? ' with a cursor plane' : ''}): ${errorText(error)}`;
        this.log(`drm: ${verdict}`);
      }
      entry.tested.set(key, verdict);
    }
    return verdict ?? entry.fbId;
  }

  private frame(modeset: boolean): void {
    const scene = this.scene!;
    const output = this.output!;
    const { primary } = this.selection;
    const { decision, cursor: cursorCandidate } = this.decide();
    let direct = this.directFramebuffer(decision, cursorCandidate);
    let cursorIndex = -1;
    if (typeof direct === 'number' && cursorCandidate && this.cursorPlane) {
      const filled = this.cursorPlane.fill(cursorCandidate);
      if (typeof filled === 'string') direct = filled;
      else cursorIndex = filled;
    }
    const cursor = cursorIndex >= 0 ? cursorCandidate : null;
    let request = modeset ? this.modesetRequest() : new AtomicRequest();
    let fbId: number;
    let path: 'direct' | 'composed' | 'repeated';
    let composedInto = -1;
    if (typeof direct === 'number' && decision.kind === 'direct') {
      fbId = direct;
      path = 'direct';
      request = this.setPrimary(request, primary, fbId, decision.source, decision.destination);
      this.cursorPlane?.set(
        request,
        cursor,
        cursor ? this.cursorPlane.framebuffer(cursorIndex) : 0,
      );
      this.deferredDamage.union(output.damage).simplify();
      output.damage.clear();
    } else {
      this.lastReason = typeof direct === 'string' ? direct : null;
      this.prepareScreenshot();
      const full = { x: 0, y: 0, width: output.config.width, height: output.config.height };
      if (!modeset && this.frontBuffer >= 0 && output.damage.isEmpty()) {
        fbId = this.buffers[this.frontBuffer]!.fbId;
        path = 'repeated';
      } else {
        composedInto = this.frontBuffer === 0 ? 1 : 0;
        scene.render(output);
        this.copyImage(this.buffers[composedInto]!);
        fbId = this.buffers[composedInto]!.fbId;
        path = 'composed';
      }
      request = this.setPrimary(
        request,
        primary,
        fbId,
        { x: 0, y: 0, width: full.width * 65536, height: full.height * 65536 },
        full,
      );
      this.cursorPlane?.set(request, null, 0);
    }
    const capture: AttachedCapture | null = this.writeback?.attach(request) ?? null;

    const surfaces = this.takeSurfaceFrames(path === 'direct' ? decision : null);
    const flags =
      AtomicFlag.PAGE_FLIP_EVENT | (modeset ? AtomicFlag.ALLOW_MODESET : AtomicFlag.NONBLOCK);
    let fences: number[];
    try {
      fences = this.commit(request, flags);
    } catch (error) {
      this.log(`drm: ${path} commit failed: ${errorText(error)}`);
      capture?.request.reject(new Error(`commit failed: ${errorText(error)}`));
      // Nothing will flip: answer the frame's callbacks now so clients keep going.
      this.complete({ fbId: this.onScreenFb, surfaces }, process.hrtime.bigint(), null);
      if (modeset) throw error;
      this.idleRetry();
      return;
    }
    this.pending = { fbId, surfaces };
    this.cursorPlane?.committed(cursor ? cursorIndex : -1);
    if (cursor) this.counters.cursorPlaneFrames++;
    if (composedInto >= 0) this.frontBuffer = composedInto;
    else if (path === 'direct') this.frontBuffer = -1;
    this.frameNumber++;
    if (path === 'direct') this.counters.directScanoutFrames++;
    else if (path === 'composed') this.counters.composedFrames++;
    else this.counters.repeatedFrames++;
    if (path !== 'repeated') this.lastPath = path;
    const description =
      path === 'direct' && decision.kind === 'direct'
        ? `direct scanout of fb ${fbId} (surface ${decision.layer.buffer.width}x${decision.layer.buffer.height} ${fourccName(decision.layer.buffer.format)})`
        : `${path} into fb ${fbId}${this.lastReason ? ` (${this.lastReason})` : ''}`;
    if (this.options.debugFrames) this.log(`drm: frame ${this.frameNumber}: ${description}`);
    const pathKey =
      path === 'direct' ? 'direct' : path === 'composed' ? `composed ${this.lastReason}` : '';
    if (pathKey !== '' && pathKey !== this.lastLoggedPath) {
      this.lastLoggedPath = pathKey;
      if (!this.options.debugFrames) this.log(`drm: now ${description}`);
    }
    if (capture) this.writeback!.finish(capture, fences);
  }

  private idleRetry(): void {
    if (this.idleTimer || this.closed) return;
    this.idleTimer = setTimeout(
      () => {
        this.idleTimer = null;
        this.wake();
      },
      Math.max(1, this.output!.refreshNs / 1e6),
    );
  }

  private copyImage(target: DumbFramebuffer): void {
    const image = this.output!.image;
    const bytes = new Uint8Array(target.map);
    const rowBytes = image.width * 4;
    if (target.pitch === image.stride) {
      bytes.set(image.pixels.subarray(0, rowBytes * image.height));
      return;
    }
    for (let y = 0; y < image.height; y++) {
      bytes.set(
        image.pixels.subarray(y * image.stride, y * image.stride + rowBytes),
        y * target.pitch,
      );
    }
  }

  /** Frame callbacks and feedback of the output's surfaces, answered when the flip lands. */
  private takeSurfaceFrames(direct: ScanoutDecision | null): SurfaceFrame[] {
    const scene = this.scene!;
    const output = this.output!;
    const visible = new Set(scene.layers().map((layer) => layer.buffer));
    const frames: SurfaceFrame[] = [];
    for (const surface of scene.surfaces) {
      if (scene.outputOf(surface) !== output) continue;
      frames.push({
        surface,
        content: surface.content,
        callbacks: surface.frameCallbacks.splice(0),
        feedbacks: surface.takeFeedbacks(),
        shown: surface.content !== null && visible.has(surface.content),
        zeroCopy:
          direct?.kind === 'direct' &&
          surface.content !== null &&
          surface.content === direct.layer.buffer,
      });
    }
    return frames;
  }

  private readEvents(): void {
    if (this.closed) return;
    let events;
    try {
      events = this.device.readEvents();
    } catch (error) {
      this.log(`drm: reading events failed: ${errorText(error)}`);
      return;
    }
    for (const event of events) {
      if (event.type !== DRM_EVENT_FLIP_COMPLETE || !this.pending) continue;
      if (event.crtcId !== undefined && event.crtcId !== this.selection.crtc.id) continue;
      const timeNs =
        BigInt(event.seconds ?? 0) * 1_000_000_000n + BigInt(event.microseconds ?? 0) * 1000n;
      const frame = this.pending;
      this.pending = null;
      this.counters.flips++;
      this.complete(frame, timeNs, event.sequence ?? null);
    }
    this.wake();
  }

  /** A frame is on screen: presentation feedback, frame callbacks, buffer releases. */
  private complete(frame: PendingFrame, timeNs: bigint, sequence: number | null): void {
    const scene = this.scene!;
    const output = this.output!;
    this.onScreenFb = frame.fbId;
    output.sequence = sequence === null ? output.sequence + 1n : BigInt(sequence);
    output.lastTickNs = timeNs;
    const timeMs = Number((timeNs / 1_000_000n) & 0xffffffffn);
    const hardware = sequence !== null;
    for (const entry of frame.surfaces) {
      for (const feedback of entry.feedbacks) {
        if (entry.shown && hardware) {
          feedback.presented({
            timeNs,
            refreshNs: output.refreshNs,
            sequence: output.sequence,
            flags:
              PresentationKind.VSYNC |
              PresentationKind.HW_CLOCK |
              PresentationKind.HW_COMPLETION |
              (entry.zeroCopy ? PresentationKind.ZERO_COPY : 0),
            outputName: output.name,
          });
        } else {
          feedback.discarded();
        }
      }
      if (entry.callbacks.length > 0) {
        scene.frameCallbacksDone += entry.callbacks.length;
        for (const callback of entry.callbacks) callback.done(timeMs);
      }
      // Buffers replaced before this frame are off screen now. If the surface took another
      // buffer after the frame was built, the one on screen is among the replaced ones: keep
      // them all until the frame showing the new one lands.
      if (!entry.surface.destroyed && entry.surface.content === entry.content) {
        entry.surface.releaseReplaced();
      }
    }
    this.framebuffers.collect();
  }
}
