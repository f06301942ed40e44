/**
 * A split virtqueue (virtio 1.x, section "Split Virtqueues") read and written in place in guest
 * memory: descriptor table, available ring, used ring. Descriptor chains may use NEXT links and
 * one indirect table at the head; every address is translated through GuestMemory with bounds
 * checks, every chain is bounded by the queue size, and a malformed chain is returned as 'bad'
 * (the caller gives the head back with length 0) rather than thrown.
 *
 * Index words shared with the guest (avail.idx, used.idx, used_event, avail_event) go through
 * Atomics, which V8 compiles to sequentially consistent accesses: that is the barrier between
 * "publish used.idx" and "read used_event" (and between "write avail_event" and "re-read
 * avail.idx") that EVENT_IDX needs. Uint16Array is host order; virtio is little-endian, and
 * so are the machines this runs on (checked at load).
 */
import os from 'node:os';
import type { GuestMemory } from './guest-memory.js';

if (os.endianness() !== 'LE') throw new Error('virtqueue access assumes a little-endian host');

export const DescFlag = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
const AVAIL_F_NO_INTERRUPT = 1;
export const MAX_QUEUE_SIZE = 32768;
const TWO_POW_32 = 0x1_0000_0000;
/** High words at or above this make an address >= 2^53: never inside guest memory. */
const MAX_SAFE_HIGH = 0x20_0000;

/**
 * One descriptor chain: the guest buffers it names, as segments of mapped guest memory
 * (device-readable ones first, then device-writable ones). A queue reuses one Chain for every
 * pop, so taking a chain allocates nothing: a chain is valid until the next `pop` of its queue.
 * `readable`/`writable` make views (they allocate; for tests and rare paths); the frame path
 * copies with `gather` and `scatter`.
 */
export class Chain {
  head = 0;
  readableLength = 0;
  writableLength = 0;
  readableCount = 0;
  writableCount = 0;
  /** Segment i: `segmentLength[i]` bytes at `segmentOffset[i]` of `segmentBytes[i]`. */
  private readonly segmentBytes: (Uint8Array | null)[];
  private readonly segmentOffset: Float64Array;
  private readonly segmentLength: Float64Array;

  constructor(capacity: number) {
    this.segmentBytes = new Array<Uint8Array | null>(capacity).fill(null);
    this.segmentOffset = new Float64Array(capacity);
    this.segmentLength = new Float64Array(capacity);
  }

  get capacity(): number {
    return this.segmentOffset.length;
  }

  /** @internal Starts a chain at `head` (the virtqueue fills it). */
  reset(head: number): void {
    this.head = head;
    this.readableLength = this.writableLength = 0;
    this.readableCount = this.writableCount = 0;
  }

  /** @internal Appends a segment (readable ones must all come first). */
  add(bytes: Uint8Array, offset: number, length: number, writable: boolean): void {
    const i = this.readableCount + this.writableCount;
    this.segmentBytes[i] = bytes;
    this.segmentOffset[i] = offset;
    this.segmentLength[i] = length;
    if (writable) {
      this.writableCount++;
      this.writableLength += length;
    } else {
      this.readableCount++;
      this.readableLength += length;
    }
  }

  private view(i: number): Uint8Array {
    const offset = this.segmentOffset[i]!;
    return this.segmentBytes[i]!.subarray(offset, offset + this.segmentLength[i]!);
  }

  /** Device-readable buffers, in order (views into guest memory; allocates). */
  get readable(): Uint8Array[] {
    return Array.from({ length: this.readableCount }, (_, i) => this.view(i));
  }

  /** Device-writable buffers, in order (views into guest memory; allocates). */
  get writable(): Uint8Array[] {
    return Array.from({ length: this.writableCount }, (_, i) => this.view(this.readableCount + i));
  }

  /**
   * Copies the first `out.length` readable bytes (all of them if fewer) into `out`; returns how
   * many. Small segments (a command header, a rect) are copied byte by byte: no view is made.
   */
  gather(out: Uint8Array): number {
    let at = 0;
    for (let i = 0; i < this.readableCount && at < out.length; i++) {
      const bytes = this.segmentBytes[i]!;
      const offset = this.segmentOffset[i]!;
      const take = Math.min(this.segmentLength[i]!, out.length - at);
      if (take <= SMALL_COPY) {
        for (let j = 0; j < take; j++) out[at + j] = bytes[offset + j]!;
      } else {
        out.set(bytes.subarray(offset, offset + take), at);
      }
      at += take;
    }
    return at;
  }

  /** Writes `length` bytes of `data` into the writable buffers; false (nothing written) if they do not fit. */
  scatter(data: Uint8Array, length = data.length): boolean {
    if (length > this.writableLength) return false;
    let at = 0;
    const end = this.readableCount + this.writableCount;
    for (let i = this.readableCount; i < end && at < length; i++) {
      const bytes = this.segmentBytes[i]!;
      const offset = this.segmentOffset[i]!;
      const take = Math.min(this.segmentLength[i]!, length - at);
      if (take <= SMALL_COPY) {
        for (let j = 0; j < take; j++) bytes[offset + j] = data[at + j]!;
      } else {
        bytes.set(data.subarray(at, at + take), offset);
      }
      at += take;
    }
    return true;
  }
}

/** Copies up to this many bytes with a loop rather than through a subarray view. */
const SMALL_COPY = 64;

export type PopResult =
  | { kind: 'chain'; chain: Chain }
  | { kind: 'empty' }
  /** A malformed chain: `head` is valid, give it back with length 0. */
  | { kind: 'bad'; head: number; reason: string }
  /** The ring itself is unusable (bad head index, avail index jump): stop processing. */
  | { kind: 'broken'; reason: string };

const EMPTY: PopResult = Object.freeze({ kind: 'empty' });

/** A DataView per mapped region, for descriptors in indirect tables (made once per region). */
const regionViews = new WeakMap<Uint8Array, DataView>();

function regionView(bytes: Uint8Array): DataView {
  let view = regionViews.get(bytes);
  if (!view) {
    view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    regionViews.set(bytes, view);
  }
  return view;
}

export class SplitVirtqueue {
  size = 0;
  descUser: number | null = null;
  availUser: number | null = null;
  usedUser: number | null = null;
  lastAvailIdx = 0;
  usedIdx = 0;
  eventIdx = false;
  indirect = false;
  broken: string | null = null;

  private desc: DataView | null = null;
  private availView: DataView | null = null;
  private avail16: Uint16Array | null = null;
  private usedView: DataView | null = null;
  private used16: Uint16Array | null = null;
  private resolvedGeneration = -1;
  /** The chain every pop fills, and the result that carries it (reused: no allocation). */
  private chain = new Chain(0);
  private chainResult: PopResult = { kind: 'chain', chain: this.chain };
  private signalledUsed = 0;
  private signalledValid = false;

  constructor(readonly index: number) {}

  /** SET_VRING_BASE: the next available index to process. */
  setBase(base: number): void {
    this.lastAvailIdx = base & 0xffff;
    this.signalledValid = false;
    this.broken = null;
  }

  /** Drops the ring views (after a memory table change or a stop). */
  invalidate(): void {
    this.desc = this.availView = this.usedView = null;
    this.avail16 = this.used16 = null;
    this.resolvedGeneration = -1;
  }

  get resolved(): boolean {
    return this.desc !== null;
  }

  /**
   * Maps the three ring parts through QEMU's address space. Returns an error string when the
   * ring is not usable (unset, misaligned, bad size, outside the memory table).
   */
  resolve(memory: GuestMemory): string | null {
    if (this.desc && this.resolvedGeneration === memory.generation) return null;
    this.invalidate();
    const n = this.size;
    if (n === 0 || n > MAX_QUEUE_SIZE || (n & (n - 1)) !== 0) return `bad queue size ${n}`;
    if (this.descUser === null || this.availUser === null || this.usedUser === null) {
      return 'ring addresses not set';
    }
    if (this.descUser % 16 || this.availUser % 2 || this.usedUser % 4) return 'misaligned ring';
    const desc = memory.userBytes(this.descUser, 16 * n);
    const avail = memory.userBytes(this.availUser, 6 + 2 * n);
    const used = memory.userBytes(this.usedUser, 6 + 8 * n);
    if (!desc || !avail || !used) return 'ring outside the memory table';
    if (avail.byteOffset % 2 || used.byteOffset % 4) return 'misaligned ring mapping';
    this.desc = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
    this.availView = new DataView(avail.buffer, avail.byteOffset, avail.byteLength);
    this.avail16 = new Uint16Array(avail.buffer, avail.byteOffset, avail.byteLength >> 1);
    this.usedView = new DataView(used.buffer, used.byteOffset, used.byteLength);
    this.used16 = new Uint16Array(used.buffer, used.byteOffset, used.byteLength >> 1);
    this.usedIdx = Atomics.load(this.used16, 1);
    this.resolvedGeneration = memory.generation;
    return null;
  }

  /** Number of chains the guest has made available and we have not taken. */
  pending(): number {
    if (!this.avail16) return 0;
    return (Atomics.load(this.avail16, 1) - this.lastAvailIdx) & 0xffff;
  }

  /**
   * Takes the next available chain. The 'chain' result and its Chain are reused by the next
   * pop of this queue (nothing is allocated per chain); 'bad' and 'broken' are new objects.
   */
  pop(memory: GuestMemory): PopResult {
    if (this.broken) return { kind: 'broken', reason: this.broken };
    if (!this.desc || !this.availView) return EMPTY;
    const pending = this.pending();
    if (pending === 0) return EMPTY;
    if (pending > this.size) {
      this.broken = `available index moved by ${pending} on a queue of ${this.size}`;
      return { kind: 'broken', reason: this.broken };
    }
    const slot = this.lastAvailIdx & (this.size - 1);
    const head = this.availView.getUint16(4 + 2 * slot, true);
    if (head >= this.size) {
      this.broken = `head index ${head} out of a queue of ${this.size}`;
      return { kind: 'broken', reason: this.broken };
    }
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    const problem = this.walk(memory, head);
    if (problem !== null) return { kind: 'bad', head, reason: problem };
    return this.chainResult;
  }

  private chainOf(): Chain {
    if (this.chain.capacity < this.size) {
      this.chain = new Chain(this.size);
      this.chainResult = { kind: 'chain', chain: this.chain };
    }
    return this.chain;
  }

  /** Fills the queue's Chain from the descriptors at `head`; an error string for a bad chain. */
  private walk(memory: GuestMemory, head: number): string | null {
    const chain = this.chainOf();
    chain.reset(head);
    let table = this.desc!;
    let base = 0;
    let tableSize = this.size;
    let index = head;
    let walked = 0;
    let inIndirect = false;
    for (;;) {
      if (index >= tableSize) return `descriptor index ${index} outside a table of ${tableSize}`;
      if (++walked > this.size) return `chain longer than the queue size ${this.size}`;
      const at = base + index * 16;
      const low = table.getUint32(at, true);
      const high = table.getUint32(at + 4, true);
      const length = table.getUint32(at + 8, true);
      const flags = table.getUint16(at + 12, true);
      const next = table.getUint16(at + 14, true);
      if (high >= MAX_SAFE_HIGH) return 'descriptor address beyond guest memory';
      const gpa = high * TWO_POW_32 + low;
      if (flags & DescFlag.INDIRECT) {
        if (!this.indirect) return 'indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC';
        if (inIndirect) return 'indirect descriptor inside an indirect table';
        if (walked !== 1) return 'indirect descriptor not at the head of the chain';
        if (flags & DescFlag.NEXT) return 'indirect descriptor with NEXT';
        if (length === 0 || length % 16 !== 0) return `indirect table length ${length}`;
        const region = memory.regionOfGuest(gpa, length);
        if (!region) return 'indirect table outside guest memory';
        table = regionView(region.bytes);
        base = gpa - region.guestAddr;
        tableSize = length / 16;
        index = 0;
        inIndirect = true;
        continue;
      }
      const writable = (flags & DescFlag.WRITE) !== 0;
      if (!writable && chain.writableCount > 0) return 'readable descriptor after a writable one';
      if (length > 0) {
        const region = memory.regionOfGuest(gpa, length);
        if (!region) return 'buffer outside guest memory';
        chain.add(region.bytes, gpa - region.guestAddr, length, writable);
      }
      if (!(flags & DescFlag.NEXT)) return null;
      index = next;
    }
  }

  /** Returns a chain to the guest with `written` bytes written into its writable part. */
  push(head: number, written: number): void {
    const used = this.usedView;
    if (!used || !this.used16) return;
    const slot = this.usedIdx & (this.size - 1);
    used.setUint32(4 + 8 * slot, head, true);
    used.setUint32(8 + 8 * slot, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    Atomics.store(this.used16, 1, this.usedIdx);
  }

  /**
   * With EVENT_IDX: asks the guest to kick when it adds past what we have taken. Returns true
   * when more chains arrived meanwhile (process them before sleeping).
   */
  armKick(): boolean {
    if (!this.eventIdx || !this.used16 || !this.avail16) return false;
    Atomics.store(this.used16, 2 + 4 * this.size, this.lastAvailIdx);
    return this.pending() !== 0;
  }

  /** Whether the guest wants an interrupt for what was pushed since the last one. */
  needsNotify(): boolean {
    if (!this.avail16) return false;
    if (!this.eventIdx) return (Atomics.load(this.avail16, 0) & AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = Atomics.load(this.avail16, 2 + this.size);
    const old = this.signalledUsed;
    const now = this.usedIdx;
    const valid = this.signalledValid;
    this.signalledUsed = now;
    this.signalledValid = true;
    if (!valid) return true;
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }
}

/** Copies a chain's readable bytes into one new buffer (at most `limit` bytes; null if longer). */
export function gatherReadable(chain: Chain, limit: number): Uint8Array | null {
  if (chain.readableLength > limit) return null;
  const out = new Uint8Array(chain.readableLength);
  chain.gather(out);
  return out;
}

/** Scatters `data` into the chain's writable buffers; false (nothing written) if it does not fit. */
export function scatterWritable(chain: Chain, data: Uint8Array): boolean {
  return chain.scatter(data);
}
