/**
 * The virtio-gpu device model (2D + guest blob command set) over guest memory: parses commands,
 * validates every guest number, keeps resources and scanouts, and reports what happens as source
 * events. It never copies pixels except in `readPixels` (the explicit fallback) and for cursors.
 *
 * Pure with respect to I/O: requests come in as bytes, responses go out as bytes.
 */
import type {
  BackingRange,
  CursorImage,
  HeadInfo,
  Rect,
  ScanoutInfo,
  SourceEvents,
  SourceResource,
} from '../types.js';
import type { TypedEmitter } from '../../common/emitter.js';
import { generateEdid } from './edid.js';
import { DrmFormat } from '../../common/formats.js';
import type { GuestMemory, Span } from '../../vhost-user/guest-memory.js';
import { rateLimitedLog, type Logger, type LogLimits } from '../../common/log.js';
import {
  BlobFlag,
  BlobMem,
  BYTES_PER_PIXEL,
  Cmd,
  commandName,
  CURSOR_SIZE,
  DISPLAY_INFO_SIZE,
  drmFourcc,
  EDID_RESPONSE_SIZE,
  encodeHeaderResponse,
  fourccName,
  HDR_SIZE,
  MAX_SCANOUTS,
  MEM_ENTRY_SIZE,
  readHeaderInto,
  readRect,
  rectFits,
  rectInside,
  RequestSize,
  Resp,
  responseName,
  writeResponseHeader,
  type CtrlHeader,
} from './gpu-protocol.js';

/**
 * What one guest may make guestfb hold. Each is per device (per guest); a command that would
 * pass one fails with ERR_OUT_OF_MEMORY (or ERR_INVALID_PARAMETER) and one log line that names
 * the limit. Backing is guest memory (not guestfb's), but every span of it is bookkeeping here
 * and a mapping or dma-buf range later, so spans and bytes are bounded too.
 */
export interface GpuLimits {
  /** Most live resources. */
  maxResources: number;
  /** Most mem entries per ATTACH_BACKING / CREATE_BLOB. */
  maxBackingEntries: number;
  /** Largest resource (bytes of pixels / blob size). */
  maxResourceBytes: number;
  /** Largest width or height. */
  maxDimension: number;
  /** Most backing spans (after merging adjacent pages) over all resources of the device. */
  maxTotalSpans: number;
  /** Most backing bytes over all resources of the device. */
  maxTotalBackingBytes: number;
}

export const DEFAULT_LIMITS: GpuLimits = {
  maxResources: 4096,
  maxBackingEntries: 16384,
  maxResourceBytes: 512 * 1024 * 1024,
  maxDimension: 16384,
  maxTotalSpans: 65536,
  maxTotalBackingBytes: 2 * 1024 * 1024 * 1024,
};

const PAGE_SIZE = 4096;

/** `bytes` rounded up to whole pages (what a guest driver allocates for it). */
function pageRounded(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
}

/** Largest control request we gather (ATTACH_BACKING with the most entries fits). */
export const MAX_REQUEST_BYTES = 1024 * 1024;

interface Resource {
  id: number;
  kind: '2d' | 'blob';
  fourcc: number;
  width: number;
  height: number;
  stride: number;
  offset: number;
  /** Blob size (blob) or 0. */
  blobSize: number;
  /** Guest-physical entries as attached, or null without backing. */
  entries: BackingEntries | null;
  spans: Span[];
  /** Start of each span within the backing (for the copy fallback). */
  spanStarts: number[];
  size: number;
}

/**
 * A guest's mem entries, in its order: two typed arrays rather than an object per entry, since
 * a guest may send 16,384 of them per command, as often as it likes.
 */
interface BackingEntries {
  gpa: Float64Array;
  length: Float64Array;
}

/** A copy of scratch entries that a resource keeps. */
function keptEntries(entries: BackingEntries): BackingEntries {
  return { gpa: entries.gpa.slice(), length: entries.length.slice() };
}

class CommandError extends Error {
  constructor(
    readonly response: number,
    message: string,
  ) {
    super(message);
  }
}

export interface GpuDeviceOptions {
  memory: GuestMemory;
  heads: HeadInfo[];
  emitter: TypedEmitter<SourceEvents>;
  log: Logger;
  limits?: Partial<GpuLimits>;
  /** The per-guest log rate (see plugin/common/log.ts). */
  logLimits?: Partial<LogLimits>;
}

/** Checks limits given by users: positive safe integers. */
export function resolveGpuLimits(limits: Partial<GpuLimits> = {}): GpuLimits {
  const resolved = { ...DEFAULT_LIMITS, ...limits };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`limit ${name} must be a positive integer (got ${String(value)})`);
    }
  }
  return resolved;
}

/** The alpha format with the same byte order, for the X formats. */
const CURSOR_ALPHA_FORMAT = new Map<number, number>([
  [DrmFormat.XRGB8888, DrmFormat.ARGB8888],
  [DrmFormat.XBGR8888, DrmFormat.ABGR8888],
  [DrmFormat.RGBX8888, DrmFormat.RGBA8888],
  [DrmFormat.BGRX8888, DrmFormat.BGRA8888],
]);

export class GpuDevice {
  /** Negotiated virtio features (the backend sets them on SET_FEATURES). */
  edid = true;
  blob = false;
  private readonly resources = new Map<number, Resource>();
  private readonly scanouts: (ScanoutInfo | null)[];
  private headList: HeadInfo[];
  readonly limits: GpuLimits;
  private readonly log: Logger;
  /** Spans and bytes of backing held over all resources (checked against the limits). */
  private totalSpans = 0;
  private totalBackingBytes = 0;
  readonly counters = {
    commands: 0,
    errors: 0,
    cursorCommands: 0,
    flushes: 0,
    transfers: 0,
    bytesCopied: 0,
  };

  /** Commands seen, by type: counted per command, so keyed by number (names are for reading). */
  private readonly countsByType = new Map<number, number>();
  /** The request header of the command being executed (one object, reused). */
  private readonly header: CtrlHeader = { type: 0, flags: 0, fenceId: 0n, ctxId: 0, ringIdx: 0 };
  /** The header-only response (most commands), rewritten per command. */
  private readonly headerResponse = new Uint8Array(HDR_SIZE);
  private readonly headerResponseView = new DataView(this.headerResponse.buffer);
  /** Per head, the flush damage handed to listeners (one rect each, reused per flush). */
  private readonly flushDamage: { x: number; y: number; width: number; height: number }[][];
  /** Heads enabled only because the guest scans out on them. */
  private readonly enabledByGuest = new Set<number>();

  constructor(private readonly options: GpuDeviceOptions) {
    if (options.heads.length < 1 || options.heads.length > MAX_SCANOUTS) {
      throw new RangeError(`scanouts must be 1..${MAX_SCANOUTS}`);
    }
    this.headList = options.heads.map((h) => ({ ...h }));
    this.scanouts = this.headList.map(() => null);
    this.flushDamage = this.headList.map(() => [{ x: 0, y: 0, width: 0, height: 0 }]);
    this.limits = resolveGpuLimits(options.limits);
    // Warnings are thinned out by the vhost-user device already; info lines (one per resource,
    // one per scanout change) are limited here.
    this.log = rateLimitedLog(options.log, options.logLimits, ['info']);
  }

  /** Backing spans and bytes held now (for stats and tests). */
  get backingTotals(): { spans: number; bytes: number } {
    return { spans: this.totalSpans, bytes: this.totalBackingBytes };
  }

  /** Commands seen, by name (unknown types counted under their hex code). */
  get commandCounts(): Map<string, number> {
    const named = new Map<string, number>();
    for (const [type, count] of this.countsByType) named.set(commandName(type), count);
    return named;
  }

  get scanoutCount(): number {
    return this.headList.length;
  }

  heads(): readonly HeadInfo[] {
    return this.headList;
  }

  /** Replaces head modes (e.g. from QEMU's display info); same count. Emits headsChanged. */
  setHeads(heads: HeadInfo[]): void {
    if (heads.length !== this.headList.length) throw new RangeError('head count cannot change');
    this.headList = heads.map((h) => ({
      ...h,
      enabled: h.enabled || this.enabledByGuest.has(h.id),
    }));
    this.options.emitter.emit('headsChanged', this.headList);
  }

  /**
   * A head the guest scans out on is shown even when the display info called it disabled (QEMU
   * without a UI enables head 0 only, yet a guest may drive more): it is enabled while the guest
   * keeps a scanout on it.
   */
  private followGuestScanout(headId: number, shown: boolean): void {
    const head = this.headList[headId];
    if (!head) return;
    if (shown && !head.enabled) {
      this.enabledByGuest.add(headId);
    } else if (!shown && this.enabledByGuest.delete(headId)) {
      // back to what the display info said
    } else {
      return;
    }
    this.headList = this.headList.map((h) => (h.id === headId ? { ...h, enabled: shown } : h));
    this.options.emitter.emit('headsChanged', this.headList);
  }

  scanout(headId: number): ScanoutInfo | null {
    return this.scanouts[headId] ?? null;
  }

  resource(id: number): SourceResource | undefined {
    const res = this.resources.get(id);
    return res ? this.describe(res) : undefined;
  }

  resourceIds(): number[] {
    return [...this.resources.keys()];
  }

  /** Forgets every resource and scanout (device reset or disconnect), emitting the events. */
  reset(): void {
    for (let head = 0; head < this.scanouts.length; head++) this.disableScanout(head);
    for (const [id, res] of [...this.resources]) {
      this.setSpans(res, [], null);
      this.resources.delete(id);
      this.options.emitter.emit('resourceDestroyed', id);
    }
  }

  /** Re-translates all backing after the memory table changed; emits backingChanged. */
  memoryChanged(): void {
    for (const res of this.resources.values()) {
      if (!res.entries) continue;
      const before = res.spans;
      const spans = this.translate(res.entries);
      if (spans === null) {
        this.log('warn', `resource ${res.id}: backing left the memory table; detached`);
        for (let head = 0; head < this.scanouts.length; head++) {
          if (this.scanouts[head]?.resourceId === res.id) this.disableScanout(head);
        }
        // Keep the entries: the range may come back with a later ADD_MEM_REG.
        this.setSpans(res, [], res.entries);
      } else {
        this.setSpans(
          res,
          res.kind === 'blob' ? trimSpans(spans, res.blobSize) : spans,
          res.entries,
        );
      }
      if (!sameSpans(before, res.spans)) {
        this.options.emitter.emit('backingChanged', this.describe(res));
      }
    }
  }

  /**
   * Executes one control-queue request and returns its response (always at least a header;
   * error responses for anything invalid).
   */
  /**
   * Executes one control request (`view`: a DataView of exactly `request`, which a caller that
   * reuses its request buffers also reuses); returns its response. A header-only response is a
   * buffer the device reuses: copy it out before the next command (the queue scatters it at once).
   */
  handleControl(
    request: Uint8Array,
    view = new DataView(request.buffer, request.byteOffset, request.byteLength),
  ): Uint8Array {
    this.counters.commands++;
    if (request.length < HDR_SIZE) {
      this.counters.errors++;
      this.log('warn', `control request of ${request.length} bytes (no header)`);
      return encodeHeaderResponse(Resp.ERR_UNSPEC, null);
    }
    const header = readHeaderInto(view, this.header);
    this.count(header.type);
    try {
      const need = RequestSize[header.type];
      if (need !== undefined && request.length < need) {
        throw new CommandError(Resp.ERR_UNSPEC, `${request.length} bytes, need ${need}`);
      }
      return this.dispatch(header, view, request);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      this.counters.errors++;
      this.log(
        'warn',
        `${commandName(header.type)}: ${responseName(error.response)}: ${error.message}`,
      );
      return encodeHeaderResponse(error.response, header);
    }
  }

  private count(type: number): void {
    const seen = this.countsByType.get(type);
    if (seen !== undefined) this.countsByType.set(type, seen + 1);
    else if (this.countsByType.size < 64) this.countsByType.set(type, 1);
  }

  private dispatch(header: CtrlHeader, view: DataView, request: Uint8Array): Uint8Array {
    switch (header.type) {
      case Cmd.GET_DISPLAY_INFO:
        return this.getDisplayInfo(header);
      case Cmd.GET_EDID:
        return this.getEdid(header, view);
      case Cmd.RESOURCE_CREATE_2D:
        this.createResource2d(view);
        break;
      case Cmd.RESOURCE_CREATE_BLOB:
        this.createResourceBlob(view, request);
        break;
      case Cmd.RESOURCE_UNREF:
        this.unrefResource(view);
        break;
      case Cmd.RESOURCE_ATTACH_BACKING:
        this.attachBacking(view, request);
        break;
      case Cmd.RESOURCE_DETACH_BACKING:
        this.detachBacking(view);
        break;
      case Cmd.SET_SCANOUT:
        this.setScanout(view);
        break;
      case Cmd.SET_SCANOUT_BLOB:
        this.setScanoutBlob(view);
        break;
      case Cmd.RESOURCE_FLUSH:
        this.flush(view);
        break;
      case Cmd.TRANSFER_TO_HOST_2D:
        this.transferToHost2d(view);
        break;
      default:
        // No capsets (no 3D), no UUIDs, no contexts: everything else is unsupported.
        throw new CommandError(Resp.ERR_UNSPEC, 'unsupported command');
    }
    writeResponseHeader(this.headerResponseView, Resp.OK_NODATA, header);
    return this.headerResponse;
  }

  private getDisplayInfo(header: CtrlHeader): Uint8Array {
    const out = new Uint8Array(DISPLAY_INFO_SIZE);
    const view = new DataView(out.buffer);
    writeResponseHeader(view, Resp.OK_DISPLAY_INFO, header);
    this.headList.forEach((head, i) => {
      const at = HDR_SIZE + 24 * i;
      view.setUint32(at, head.x, true);
      view.setUint32(at + 4, head.y, true);
      view.setUint32(at + 8, head.width, true);
      view.setUint32(at + 12, head.height, true);
      view.setUint32(at + 16, head.enabled ? 1 : 0, true);
    });
    return out;
  }

  private getEdid(header: CtrlHeader, view: DataView): Uint8Array {
    if (!this.edid) throw new CommandError(Resp.ERR_UNSPEC, 'VIRTIO_GPU_F_EDID not negotiated');
    const scanoutId = view.getUint32(24, true);
    const head = this.head(scanoutId);
    const edid = generateEdid({
      width: head.width,
      height: head.height,
      name: head.name,
      serial: head.id,
    });
    if (!edid) throw new CommandError(Resp.ERR_UNSPEC, `no EDID for ${head.width}x${head.height}`);
    const out = new Uint8Array(EDID_RESPONSE_SIZE);
    const outView = new DataView(out.buffer);
    writeResponseHeader(outView, Resp.OK_EDID, header);
    outView.setUint32(HDR_SIZE, edid.length, true);
    out.set(edid, HDR_SIZE + 8);
    return out;
  }

  private head(scanoutId: number): HeadInfo {
    const head = this.headList[scanoutId];
    if (!head || scanoutId >= this.headList.length) {
      throw new CommandError(Resp.ERR_INVALID_SCANOUT_ID, `scanout ${scanoutId}`);
    }
    return head;
  }

  private lookup(id: number): Resource {
    const res = id === 0 ? undefined : this.resources.get(id);
    if (!res) throw new CommandError(Resp.ERR_INVALID_RESOURCE_ID, `resource ${id}`);
    return res;
  }

  private checkNewId(id: number): void {
    if (id === 0 || this.resources.has(id)) {
      throw new CommandError(Resp.ERR_INVALID_RESOURCE_ID, `resource id ${id} is 0 or in use`);
    }
    if (this.resources.size >= this.limits.maxResources) {
      throw new CommandError(
        Resp.ERR_OUT_OF_MEMORY,
        `more than ${this.limits.maxResources} resources`,
      );
    }
  }

  private createResource2d(view: DataView): void {
    const id = view.getUint32(24, true);
    const format = view.getUint32(28, true);
    const width = view.getUint32(32, true);
    const height = view.getUint32(36, true);
    this.checkNewId(id);
    const fourcc = drmFourcc(format);
    if (fourcc === null) throw new CommandError(Resp.ERR_INVALID_PARAMETER, `format ${format}`);
    const max = this.limits.maxDimension;
    if (width === 0 || height === 0 || width > max || height > max) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `size ${width}x${height} outside 1..${max} (limit maxDimension)`,
      );
    }
    const stride = width * BYTES_PER_PIXEL;
    if (stride * height > this.limits.maxResourceBytes) {
      throw new CommandError(Resp.ERR_OUT_OF_MEMORY, `${width}x${height} too large`);
    }
    const res: Resource = {
      id,
      kind: '2d',
      fourcc,
      width,
      height,
      stride,
      offset: 0,
      blobSize: 0,
      entries: null,
      spans: [],
      spanStarts: [],
      size: 0,
    };
    this.resources.set(id, res);
    this.log(
      'info',
      `resource ${id}: 2D ${width}x${height} ${fourccName(fourcc)} (virtio format ${format})`,
    );
    this.options.emitter.emit('resourceCreated', this.describe(res));
  }

  /**
   * Scratch arrays for the entries of the command being executed and their sorted starts and
   * ends; grown to the largest count seen. Entries are copied out only when a backing is kept.
   */
  private entryScratch = new Float64Array(0);

  private scratch(count: number): [Float64Array, Float64Array, Float64Array, Float64Array] {
    if (this.entryScratch.length < 4 * count) this.entryScratch = new Float64Array(4 * count);
    const part = (i: number) => this.entryScratch.subarray(i * count, (i + 1) * count);
    return [part(0), part(1), part(2), part(3)];
  }

  /** Reads `count` mem entries at byte `at` of the request (into the scratch arrays). */
  private readEntries(request: Uint8Array, at: number, count: number): BackingEntries {
    if (count === 0 || count > this.limits.maxBackingEntries) {
      throw new CommandError(Resp.ERR_UNSPEC, `${count} backing entries`);
    }
    if (request.length - at < count * MEM_ENTRY_SIZE) {
      throw new CommandError(Resp.ERR_UNSPEC, `${count} entries do not fit the request`);
    }
    const view = new DataView(request.buffer, request.byteOffset + at, count * MEM_ENTRY_SIZE);
    const [gpa, length] = this.scratch(count);
    const entries: BackingEntries = { gpa, length };
    for (let i = 0; i < count; i++) {
      const high = view.getUint32(i * 16 + 4, true);
      const low = view.getUint32(i * 16, true);
      const length = view.getUint32(i * 16 + 8, true);
      if (high >= 0x20_0000)
        throw new CommandError(Resp.ERR_UNSPEC, `entry ${i} beyond guest memory`);
      if (length === 0) throw new CommandError(Resp.ERR_INVALID_PARAMETER, `entry ${i} is empty`);
      entries.gpa[i] = high * 0x1_0000_0000 + low;
      entries.length[i] = length;
    }
    return entries;
  }

  private translate(entries: BackingEntries): Span[] | null {
    const spans: Span[] = [];
    const memory = this.options.memory;
    for (let i = 0; i < entries.gpa.length; i++) {
      if (!memory.appendSpans(entries.gpa[i]!, entries.length[i]!, spans)) return null;
    }
    return spans;
  }

  private setSpans(res: Resource, spans: Span[], entries: BackingEntries | null): void {
    this.totalSpans += spans.length - res.spans.length;
    this.totalBackingBytes -= res.size;
    res.entries = entries;
    res.spans = spans;
    res.spanStarts = [];
    let total = 0;
    for (const span of spans) {
      res.spanStarts.push(total);
      total += span.length;
    }
    res.size = total;
    this.totalBackingBytes += total;
  }

  /**
   * The limits a guest's entries meet before anything is made of them: no two overlap, and
   * together they hold at most `needed` bytes rounded up to pages. Checked on the entries alone
   * (two sorted copies, no object per entry), so a refused list costs little. Returns their
   * byte total.
   */
  private checkEntries(id: number, entries: BackingEntries, needed: number): number {
    const count = entries.gpa.length;
    const { gpa, length } = entries;
    let total = 0;
    // Guests list their pages in ascending order: one pass proves those disjoint, and only the
    // rest pay for two sorts (a 16,384-entry list costs ~1-2 ms per sort).
    let ascending = true;
    for (let i = 0; i < count; i++) {
      total += length[i]!;
      if (ascending && i + 1 < count && gpa[i]! + length[i]! > gpa[i + 1]!) ascending = false;
    }
    if (!ascending) {
      // Entries are disjoint exactly when, with starts and ends sorted separately, each end is at
      // or before the next start (at most one entry covers any address).
      const [, , starts, ends] = this.scratch(count);
      starts.set(gpa);
      starts.sort();
      for (let i = 0; i < count; i++) ends[i] = gpa[i]! + length[i]!;
      ends.sort();
      for (let i = 0; i + 1 < count; i++) {
        if (ends[i]! > starts[i + 1]!) {
          throw new CommandError(
            Resp.ERR_INVALID_PARAMETER,
            `limit: backing entries of resource ${id} overlap at guest address 0x${starts[i + 1]!.toString(16)}`,
          );
        }
      }
    }
    const allowed = pageRounded(needed);
    if (total > allowed) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `limit: resource ${id} backing of ${total} bytes exceeds its size rounded to pages (${allowed})`,
      );
    }
    return total;
  }

  /**
   * The device's span and byte totals with what these entries (`total` bytes) would add, checked before any
   * span is made (the span count comes from a pass that makes no objects).
   */
  private checkTotals(id: number, entries: BackingEntries, total: number): void {
    const spanCount = this.options.memory.countSpans(entries.gpa, entries.length);
    if (spanCount === null) throw new CommandError(Resp.ERR_UNSPEC, 'backing outside guest memory');
    if (this.totalSpans + spanCount > this.limits.maxTotalSpans) {
      throw new CommandError(
        Resp.ERR_OUT_OF_MEMORY,
        `limit maxTotalSpans (${this.limits.maxTotalSpans}) reached: resource ${id} brings ${spanCount} spans to the ${this.totalSpans} held`,
      );
    }
    if (this.totalBackingBytes + total > this.limits.maxTotalBackingBytes) {
      throw new CommandError(
        Resp.ERR_OUT_OF_MEMORY,
        `limit maxTotalBackingBytes (${this.limits.maxTotalBackingBytes}) reached: resource ${id} brings ${total} bytes to the ${this.totalBackingBytes} held`,
      );
    }
  }

  private createResourceBlob(view: DataView, request: Uint8Array): void {
    if (!this.blob)
      throw new CommandError(Resp.ERR_UNSPEC, 'VIRTIO_GPU_F_RESOURCE_BLOB not negotiated');
    const id = view.getUint32(24, true);
    const blobMem = view.getUint32(28, true);
    const blobFlags = view.getUint32(32, true);
    const count = view.getUint32(36, true);
    const size = view.getBigUint64(48, true);
    this.checkNewId(id);
    if (blobMem !== BlobMem.GUEST) {
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, `blob_mem ${blobMem} (only GUEST)`);
    }
    if (blobFlags & ~(BlobFlag.USE_SHAREABLE | BlobFlag.USE_CROSS_DEVICE)) {
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, `blob_flags 0x${blobFlags.toString(16)}`);
    }
    if (size === 0n || size > BigInt(this.limits.maxResourceBytes)) {
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, `blob size ${size}`);
    }
    const entries = this.readEntries(request, RequestSize[Cmd.RESOURCE_CREATE_BLOB]!, count);
    const blobSize = Number(size);
    this.checkTotals(id, entries, this.checkEntries(id, entries, blobSize));
    const spans = this.translate(entries);
    if (!spans) throw new CommandError(Resp.ERR_UNSPEC, 'blob backing outside guest memory');
    const total = spans.reduce((sum, s) => sum + s.length, 0);
    if (total < blobSize) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `entries hold ${total} bytes, blob is ${blobSize}`,
      );
    }
    const res: Resource = {
      id,
      kind: 'blob',
      fourcc: 0,
      width: 0,
      height: 0,
      stride: 0,
      offset: 0,
      blobSize,
      entries: null,
      spans: [],
      spanStarts: [],
      size: 0,
    };
    this.setSpans(res, trimSpans(spans, blobSize), keptEntries(entries));
    this.resources.set(id, res);
    this.log(
      'info',
      `resource ${id}: guest blob of ${blobSize} bytes in ${res.spans.length} spans`,
    );
    this.options.emitter.emit('resourceCreated', this.describe(res));
  }

  private unrefResource(view: DataView): void {
    const res = this.lookup(view.getUint32(24, true));
    for (let head = 0; head < this.scanouts.length; head++) {
      if (this.scanouts[head]?.resourceId === res.id) this.disableScanout(head);
    }
    this.setSpans(res, [], null);
    this.resources.delete(res.id);
    this.options.emitter.emit('resourceDestroyed', res.id);
  }

  private attachBacking(view: DataView, request: Uint8Array): void {
    const res = this.lookup(view.getUint32(24, true));
    const count = view.getUint32(28, true);
    if (res.kind === 'blob')
      throw new CommandError(Resp.ERR_UNSPEC, 'blob resources keep their backing');
    if (res.entries)
      throw new CommandError(Resp.ERR_UNSPEC, `resource ${res.id} already has backing`);
    const entries = this.readEntries(request, RequestSize[Cmd.RESOURCE_ATTACH_BACKING]!, count);
    this.checkTotals(res.id, entries, this.checkEntries(res.id, entries, res.stride * res.height));
    const spans = this.translate(entries);
    if (!spans) throw new CommandError(Resp.ERR_UNSPEC, 'backing outside guest memory');
    this.setSpans(res, spans, keptEntries(entries));
    this.log(
      'debug',
      `resource ${res.id}: ${count} entries -> ${spans.length} fd spans, ${res.size} bytes`,
    );
    this.options.emitter.emit('backingChanged', this.describe(res));
  }

  private detachBacking(view: DataView): void {
    const res = this.lookup(view.getUint32(24, true));
    if (res.kind === 'blob')
      throw new CommandError(Resp.ERR_UNSPEC, 'blob resources keep their backing');
    if (!res.entries) throw new CommandError(Resp.ERR_UNSPEC, `resource ${res.id} has no backing`);
    for (let head = 0; head < this.scanouts.length; head++) {
      if (this.scanouts[head]?.resourceId === res.id) this.disableScanout(head);
    }
    this.setSpans(res, [], null);
    this.options.emitter.emit('backingChanged', this.describe(res));
  }

  private disableScanout(head: number): void {
    if (this.scanouts[head] === null) return;
    this.scanouts[head] = null;
    this.options.emitter.emit('scanoutSet', head, null);
    this.followGuestScanout(head, false);
  }

  private showScanout(scanout: ScanoutInfo): void {
    const current = this.scanouts[scanout.headId];
    if (current && sameScanout(current, scanout)) return; // the guest repeats SET_SCANOUT
    this.scanouts[scanout.headId] = scanout;
    this.log(
      'info',
      `scanout ${scanout.headId}: resource ${scanout.resourceId} ${fourccName(scanout.fourcc)} ` +
        `${scanout.width}x${scanout.height} stride ${scanout.stride} offset ${scanout.offset} ` +
        `rect ${scanout.rect.x},${scanout.rect.y} ${scanout.rect.width}x${scanout.rect.height}`,
    );
    this.followGuestScanout(scanout.headId, true);
    this.options.emitter.emit('scanoutSet', scanout.headId, scanout);
  }

  private setScanout(view: DataView): void {
    const rect = readRect(view, 24);
    const scanoutId = view.getUint32(40, true);
    const resourceId = view.getUint32(44, true);
    this.head(scanoutId);
    if (resourceId === 0) {
      this.disableScanout(scanoutId);
      return;
    }
    const res = this.lookup(resourceId);
    if (res.kind !== '2d')
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, 'blob resource needs SET_SCANOUT_BLOB');
    if (!rectInside(rect, res.width, res.height)) {
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, `rect outside ${res.width}x${res.height}`);
    }
    if (res.size < res.stride * res.height) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `backing of ${res.size} bytes < ${res.stride * res.height}`,
      );
    }
    this.showScanout({
      headId: scanoutId,
      resourceId,
      fourcc: res.fourcc,
      modifier: 0n,
      width: res.width,
      height: res.height,
      stride: res.stride,
      offset: 0,
      rect,
    });
  }

  private setScanoutBlob(view: DataView): void {
    if (!this.blob)
      throw new CommandError(Resp.ERR_UNSPEC, 'VIRTIO_GPU_F_RESOURCE_BLOB not negotiated');
    const rect = readRect(view, 24);
    const scanoutId = view.getUint32(40, true);
    const resourceId = view.getUint32(44, true);
    const width = view.getUint32(48, true);
    const height = view.getUint32(52, true);
    const format = view.getUint32(56, true);
    const stride = view.getUint32(64, true);
    const offset = view.getUint32(80, true);
    this.head(scanoutId);
    if (resourceId === 0) {
      this.disableScanout(scanoutId);
      return;
    }
    const res = this.lookup(resourceId);
    if (res.kind !== 'blob')
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, 'not a blob resource');
    const fourcc = drmFourcc(format);
    if (fourcc === null) throw new CommandError(Resp.ERR_INVALID_PARAMETER, `format ${format}`);
    const max = this.limits.maxDimension;
    if (width === 0 || height === 0 || width > max || height > max) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `size ${width}x${height} outside 1..${max} (limit maxDimension)`,
      );
    }
    if (stride < width * BYTES_PER_PIXEL) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `stride ${stride} < ${width * BYTES_PER_PIXEL}`,
      );
    }
    const end = offset + stride * (height - 1) + width * BYTES_PER_PIXEL;
    if (end > res.blobSize) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `layout needs ${end} bytes, blob has ${res.blobSize}`,
      );
    }
    if (!rectInside(rect, width, height)) {
      throw new CommandError(Resp.ERR_INVALID_PARAMETER, `rect outside ${width}x${height}`);
    }
    if (
      res.fourcc !== fourcc ||
      res.width !== width ||
      res.height !== height ||
      res.stride !== stride ||
      res.offset !== offset
    ) {
      Object.assign(res, { fourcc, width, height, stride, offset });
      this.options.emitter.emit('backingChanged', this.describe(res));
    }
    this.showScanout({
      headId: scanoutId,
      resourceId,
      fourcc,
      modifier: 0n,
      width,
      height,
      stride,
      offset,
      rect,
    });
  }

  private flush(view: DataView): void {
    const x = view.getUint32(24, true);
    const y = view.getUint32(28, true);
    const w = view.getUint32(32, true);
    const h = view.getUint32(36, true);
    const res = this.lookup(view.getUint32(40, true));
    if (res.width === 0) return; // a blob never scanned out: nothing shows it
    if (!rectFits(x, y, w, h, res.width, res.height)) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `flush rect outside ${res.width}x${res.height}`,
      );
    }
    this.counters.flushes++;
    for (let head = 0; head < this.scanouts.length; head++) {
      const scanout = this.scanouts[head];
      if (scanout?.resourceId !== res.id) continue;
      const shown = scanout.rect;
      const x0 = Math.max(x, shown.x);
      const y0 = Math.max(y, shown.y);
      const x1 = Math.min(x + w, shown.x + shown.width);
      const y1 = Math.min(y + h, shown.y + shown.height);
      if (x1 <= x0 || y1 <= y0) continue;
      // The damage array and its rect are reused: listeners read them during the call.
      const damage = this.flushDamage[head]!;
      const rect = damage[0]!;
      rect.x = x0;
      rect.y = y0;
      rect.width = x1 - x0;
      rect.height = y1 - y0;
      this.options.emitter.emit('flush', head, damage);
    }
  }

  private transferToHost2d(view: DataView): void {
    const x = view.getUint32(24, true);
    const y = view.getUint32(28, true);
    const w = view.getUint32(32, true);
    const h = view.getUint32(36, true);
    const offsetLow = view.getUint32(40, true);
    const offsetHigh = view.getUint32(44, true);
    const res = this.lookup(view.getUint32(48, true));
    this.counters.transfers++;
    if (res.kind === 'blob') return; // guest blobs are shared memory: nothing to transfer
    if (!rectFits(x, y, w, h, res.width, res.height)) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `transfer rect outside ${res.width}x${res.height}`,
      );
    }
    if (!res.entries) throw new CommandError(Resp.ERR_UNSPEC, `resource ${res.id} has no backing`);
    // Exact in doubles: a high word above 2^20 alone is past any backing (sizes are < 2^53).
    const offset = offsetHigh * 0x1_0000_0000 + offsetLow;
    const last = offset + (h - 1) * res.stride + w * BYTES_PER_PIXEL;
    if (offsetHigh >= 0x10_0000 || last > res.size) {
      throw new CommandError(
        Resp.ERR_INVALID_PARAMETER,
        `transfer reaches byte ${offsetHigh >= 0x10_0000 ? view.getBigUint64(40, true) : last} of ${res.size}`,
      );
    }
    // Zero-copy path: the host reads the backing itself; nothing to do.
  }

  /** Executes one cursor-queue request (they carry no response). */
  handleCursor(request: Uint8Array): void {
    this.counters.cursorCommands++;
    const need = RequestSize[Cmd.UPDATE_CURSOR]!;
    if (request.length < need) {
      this.counters.errors++;
      this.log('warn', `cursor request of ${request.length} bytes`);
      return;
    }
    const view = new DataView(request.buffer, request.byteOffset, request.byteLength);
    const type = view.getUint32(0, true);
    this.count(type);
    const scanoutId = view.getUint32(24, true);
    const x = view.getUint32(28, true);
    const y = view.getUint32(32, true);
    if (type !== Cmd.UPDATE_CURSOR && type !== Cmd.MOVE_CURSOR) {
      this.counters.errors++;
      this.log('warn', `cursor queue: unsupported command ${commandName(type)}`);
      return;
    }
    if (scanoutId >= this.headList.length) {
      this.counters.errors++;
      this.log('warn', `cursor on scanout ${scanoutId}`);
      return;
    }
    if (type === Cmd.MOVE_CURSOR) {
      this.options.emitter.emit('cursor', { headId: scanoutId, x, y });
      return;
    }
    const resourceId = view.getUint32(40, true);
    const hotX = view.getUint32(44, true);
    const hotY = view.getUint32(48, true);
    if (resourceId === 0) {
      this.options.emitter.emit('cursor', { headId: scanoutId, x, y, image: null });
      return;
    }
    const image = this.cursorImage(resourceId, hotX, hotY);
    if (!image) {
      this.counters.errors++;
      return;
    }
    this.options.emitter.emit('cursor', { headId: scanoutId, x, y, image });
  }

  private cursorImage(resourceId: number, hotX: number, hotY: number): CursorImage | null {
    const res = this.resources.get(resourceId);
    if (!res || res.width === 0 || res.width > CURSOR_SIZE || res.height > CURSOR_SIZE) {
      this.log('warn', `cursor resource ${resourceId} unknown or not a <= 64x64 image`);
      return null;
    }
    const pixels = new Uint8Array(res.width * res.height * BYTES_PER_PIXEL);
    if (!this.readPixels(res.id, { x: 0, y: 0, width: res.width, height: res.height }, pixels)) {
      this.log('warn', `cursor resource ${resourceId} has no usable backing`);
      return null;
    }
    return {
      resourceId,
      hotX: Math.min(hotX, res.width - 1),
      hotY: Math.min(hotY, res.height - 1),
      width: res.width,
      height: res.height,
      // A cursor's fourth byte is alpha whatever the resource says: Linux makes cursors from dumb
      // buffers, whose resources are B8G8R8X8, and QEMU reads them as ARGB too.
      fourcc: CURSOR_ALPHA_FORMAT.get(res.fourcc) ?? res.fourcc,
      pixels,
    };
  }

  /** The copy fallback (see FramebufferSource.readPixels). */
  readPixels(resourceId: number, rect: Rect, target: Uint8Array): boolean {
    const res = this.resources.get(resourceId);
    if (!res || res.width === 0 || res.spans.length === 0) return false;
    const valid = [rect.x, rect.y, rect.width, rect.height].every(
      (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32,
    );
    if (!valid || !rectInside(rect, res.width, res.height)) return false;
    const rowBytes = rect.width * BYTES_PER_PIXEL;
    if (target.length < rowBytes * rect.height) return false;
    const lastByte =
      res.offset + (rect.y + rect.height - 1) * res.stride + rect.x * BYTES_PER_PIXEL + rowBytes;
    if (lastByte > res.size) return false;
    for (let row = 0; row < rect.height; row++) {
      const from = res.offset + (rect.y + row) * res.stride + rect.x * BYTES_PER_PIXEL;
      this.copyBacking(res, from, rowBytes, target, row * rowBytes);
    }
    this.counters.bytesCopied += rowBytes * rect.height;
    return true;
  }

  private copyBacking(
    res: Resource,
    from: number,
    length: number,
    target: Uint8Array,
    at: number,
  ): void {
    // Binary search for the span holding `from`.
    let lo = 0;
    let hi = res.spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (res.spanStarts[mid]! <= from) lo = mid;
      else hi = mid - 1;
    }
    let index = lo;
    let offset = from - res.spanStarts[index]!;
    let left = length;
    while (left > 0) {
      const span = res.spans[index]!;
      const take = Math.min(left, span.length - offset);
      const start = span.regionOffset + offset;
      target.set(span.region.bytes.subarray(start, start + take), at);
      at += take;
      left -= take;
      index++;
      offset = 0;
    }
  }

  private describe(res: Resource): SourceResource {
    const backing: BackingRange[] = res.spans.map(({ fd, offset, length }) => ({
      fd,
      offset,
      length,
    }));
    return {
      id: res.id,
      kind: res.kind,
      fourcc: res.fourcc,
      modifier: 0n,
      width: res.width,
      height: res.height,
      stride: res.stride,
      offset: res.offset,
      size: res.size,
      backing,
    };
  }
}

function sameScanout(a: ScanoutInfo, b: ScanoutInfo): boolean {
  return (
    a.resourceId === b.resourceId &&
    a.fourcc === b.fourcc &&
    a.width === b.width &&
    a.height === b.height &&
    a.stride === b.stride &&
    a.offset === b.offset &&
    a.rect.x === b.rect.x &&
    a.rect.y === b.rect.y &&
    a.rect.width === b.rect.width &&
    a.rect.height === b.rect.height
  );
}

function sameSpans(a: readonly Span[], b: readonly Span[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.fd !== y.fd || x.offset !== y.offset || x.length !== y.length) return false;
  }
  return true;
}

/** Cuts spans down to the first `size` bytes. */
function trimSpans(spans: Span[], size: number): Span[] {
  const out: Span[] = [];
  let left = size;
  for (const span of spans) {
    if (left <= 0) break;
    out.push({ ...span, length: Math.min(span.length, left) });
    left -= span.length;
  }
  return out;
}
