/**
 * Fuzzer for the virtio-gpu back-end: random and mutated command payloads in random and
 * malformed descriptor chains, submitted to in-memory rings. Invariants checked on every case:
 * - nothing throws out of the back-end (an out-of-bounds DataView access would throw too);
 * - every submitted chain comes back in the used ring exactly once, with its own head;
 * - every control request got either a valid response (a known response type, of the size that
 *   type has, fence echoed when fenced) or a logged drop (used length 0, `dropped` counter and a
 *   log line); cursor requests are consumed (no response by design) or dropped with a log;
 * - the emitted resources describe backing inside the guest memory table.
 * Ring-level corruption (avail index jumps, bad heads) runs on throwaway devices and must only
 * stop the queue with a log line.
 */
import {
  CtrlFlag,
  Cmd,
  commandName,
  encodeMemEntries,
  HDR_SIZE,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { GpuBench, HIGH_START, LOW_END, RAM_SIZE } from '../unit/virtio-gpu-harness.js';

/** xorshift128+ on two 32-bit halves pairs (fast, seedable, good enough for fuzzing). */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    // splitmix32 to spread the seed
    const mix = () => {
      seed = (seed + 0x9e3779b9) | 0;
      let z = seed;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix() | 1;
  }
  /** A uniform u32 (xoshiro128**). */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

const COMMANDS = [
  Cmd.GET_DISPLAY_INFO,
  Cmd.RESOURCE_CREATE_2D,
  Cmd.RESOURCE_UNREF,
  Cmd.SET_SCANOUT,
  Cmd.RESOURCE_FLUSH,
  Cmd.TRANSFER_TO_HOST_2D,
  Cmd.RESOURCE_ATTACH_BACKING,
  Cmd.RESOURCE_DETACH_BACKING,
  Cmd.GET_CAPSET_INFO,
  Cmd.GET_EDID,
  Cmd.RESOURCE_CREATE_BLOB,
  Cmd.SET_SCANOUT_BLOB,
];

const RESPONSE_SIZES = new Map<number, number>([
  [Resp.OK_NODATA, HDR_SIZE],
  [Resp.OK_DISPLAY_INFO, 408],
  [Resp.OK_EDID, 1056],
  [Resp.ERR_UNSPEC, HDR_SIZE],
  [Resp.ERR_OUT_OF_MEMORY, HDR_SIZE],
  [Resp.ERR_INVALID_SCANOUT_ID, HDR_SIZE],
  [Resp.ERR_INVALID_RESOURCE_ID, HDR_SIZE],
  [Resp.ERR_INVALID_CONTEXT_ID, HDR_SIZE],
  [Resp.ERR_INVALID_PARAMETER, HDR_SIZE],
]);

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** Fresh device every this many cases (bounds state growth). */
  devicePeriod?: number;
  onProgress?: (done: number) => void;
}

export interface FuzzResult {
  cases: number;
  responses: number;
  drops: number;
  cursorCases: number;
  ringCorruptions: number;
  byResponse: Record<string, number>;
  /** Successful responses by command: shows how deep the generator gets. */
  okByCommand: Record<string, number>;
}

const responseNames = new Map(Object.entries(Resp).map(([name, value]) => [value as number, name]));

export class FuzzFailure extends Error {
  override name = 'FuzzFailure';
}

export function runFuzz(options: FuzzOptions): FuzzResult {
  const rng = new Prng(options.seed);
  const period = options.devicePeriod ?? 4000;
  const result: FuzzResult = {
    cases: 0,
    responses: 0,
    drops: 0,
    cursorCases: 0,
    ringCorruptions: 0,
    byResponse: {},
    okByCommand: {},
  };
  let bench = freshBench(rng);
  let pool = bench.alloc.reserve(256 * 1024);
  for (let index = 0; index < options.cases; index++) {
    if (index > 0 && index % period === 0) {
      bench = freshBench(rng);
      pool = bench.alloc.reserve(256 * 1024);
    }
    const where = () => `seed ${options.seed}, case ${index}`;
    try {
      if (rng.chance(0.003)) {
        ringCorruption(rng, where);
        result.ringCorruptions++;
      } else if (rng.chance(0.1)) {
        cursorCase(bench, rng, pool, where);
        result.cursorCases++;
      } else {
        const outcome = controlCase(bench, rng, pool, where);
        if (outcome === null) result.drops++;
        else {
          result.responses++;
          const name = responseNames.get(outcome.response) ?? String(outcome.response);
          result.byResponse[name] = (result.byResponse[name] ?? 0) + 1;
          if (outcome.response < Resp.ERR_UNSPEC) {
            const command = commandName(outcome.type);
            result.okByCommand[command] = (result.okByCommand[command] ?? 0) + 1;
          }
        }
      }
    } catch (error) {
      if (error instanceof FuzzFailure) throw error;
      throw new FuzzFailure(
        `${where()}: the back-end threw: ${(error as Error).stack ?? String(error)}`,
      );
    }
    if (bench.listenerErrors.length)
      throw new FuzzFailure(`${where()}: listener error ${String(bench.listenerErrors[0])}`);
    result.cases++;
    if (options.onProgress && index % 10000 === 9999) options.onProgress(index + 1);
  }
  return result;
}

function freshBench(rng: Prng): GpuBench {
  return new GpuBench({
    blob: rng.chance(0.5),
    eventIdx: rng.chance(0.5),
    scanouts: 1 + rng.below(3),
    queueSize: 64,
  });
}

/** A u32 biased towards interesting values. */
function word(rng: Prng, small = 8): number {
  switch (rng.below(8)) {
    case 0:
      return 0;
    case 1:
      return 0xffffffff;
    case 2:
      return rng.u32();
    case 3:
      return 0x80000000 + rng.below(4) - 2;
    default:
      return rng.below(small);
  }
}

function dimension(rng: Prng): number {
  switch (rng.below(6)) {
    case 0:
      return word(rng);
    case 1:
      return 16384 + rng.below(3) - 1;
    default:
      return 1 + rng.below(96);
  }
}

function memEntries(rng: Prng, pool: number, count: number): Uint8Array {
  const entries = [];
  for (let i = 0; i < count; i++) {
    let addr: number | bigint;
    let length: number;
    switch (rng.chance(0.9) ? 9 : rng.below(5)) {
      case 0:
        addr = LOW_END - rng.below(8192);
        length = 1 + rng.below(16384);
        break;
      case 1:
        addr = RAM_SIZE - rng.below(8192);
        length = 1 + rng.below(16384);
        break;
      case 2:
        addr = (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
        length = rng.u32();
        break;
      case 3:
        addr = BigInt(Number.MAX_SAFE_INTEGER) - BigInt(rng.below(4096));
        length = 4096;
        break;
      case 4:
        addr = HIGH_START + rng.below(RAM_SIZE - HIGH_START);
        length = rng.chance(0.5) ? 0 : rng.u32();
        break;
      default:
        addr = pool + 4096 * rng.below(64);
        length = rng.chance(0.8) ? 4096 : 1 + rng.below(4096 * 4);
    }
    entries.push({ addr, length });
  }
  return encodeMemEntries(entries);
}

/** A request for `type` with plausible-to-hostile fields. */
function buildRequest(rng: Prng, type: number, pool: number): Uint8Array {
  const words: number[] = [];
  const id = () => (rng.chance(0.85) ? rng.below(6) : word(rng));
  const rect = () => {
    if (rng.chance(0.6)) {
      const w = 1 + rng.below(64);
      const h = 1 + rng.below(64);
      return [rng.below(32), rng.below(32), w, h];
    }
    return [word(rng, 128), word(rng, 128), word(rng, 128), word(rng, 128)];
  };
  let tail: Uint8Array | undefined;
  switch (type) {
    case Cmd.RESOURCE_CREATE_2D:
      words.push(
        id(),
        rng.chance(0.8) ? rng.pick([1, 2, 3, 4, 67, 68, 121, 134]) : word(rng, 200),
        dimension(rng),
        dimension(rng),
      );
      break;
    case Cmd.RESOURCE_UNREF:
    case Cmd.RESOURCE_DETACH_BACKING:
    case Cmd.GET_EDID:
    case Cmd.GET_CAPSET_INFO:
      words.push(type === Cmd.GET_EDID ? word(rng, 4) : id(), 0);
      break;
    case Cmd.SET_SCANOUT:
      words.push(...rect(), word(rng, 4), id());
      break;
    case Cmd.RESOURCE_FLUSH:
      words.push(...rect(), id(), 0);
      break;
    case Cmd.TRANSFER_TO_HOST_2D:
      words.push(
        ...rect(),
        rng.chance(0.6) ? 0 : word(rng, 65536),
        rng.chance(0.9) ? 0 : word(rng),
        id(),
        0,
      );
      break;
    case Cmd.RESOURCE_ATTACH_BACKING: {
      const count = rng.chance(0.9) ? 1 + rng.below(12) : word(rng, 20000);
      words.push(id(), count);
      tail = memEntries(rng, pool, Math.min(count, 16 + rng.below(4)));
      break;
    }
    case Cmd.RESOURCE_CREATE_BLOB: {
      const count = rng.chance(0.9) ? 1 + rng.below(8) : word(rng, 20000);
      const size = rng.chance(0.7)
        ? 4096 * (1 + rng.below(Math.min(count, 16)))
        : word(rng, 1 << 20);
      words.push(
        id(),
        rng.chance(0.8) ? 1 : word(rng, 4),
        rng.chance(0.8) ? 2 : word(rng, 8),
        count,
        word(rng),
        word(rng),
        size,
        rng.chance(0.9) ? 0 : word(rng),
      );
      tail = memEntries(rng, pool, Math.min(count, 16));
      break;
    }
    case Cmd.SET_SCANOUT_BLOB: {
      const w = dimension(rng);
      const h = dimension(rng);
      const stride = rng.chance(0.7) ? w * 4 + 4 * rng.below(4) : word(rng, 1 << 16);
      words.push(
        ...rect(),
        word(rng, 4),
        id(),
        w,
        h,
        rng.chance(0.8) ? 2 : word(rng, 200),
        0,
        stride,
        0,
        0,
        0,
        word(rng, 4096),
        0,
        0,
        0,
      );
      break;
    }
    default:
      for (let i = rng.below(12); i > 0; i--) words.push(word(rng));
  }
  const out = new Uint8Array(HDR_SIZE + 4 * words.length + (tail?.length ?? 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, type, true);
  const fenced = rng.chance(0.3);
  view.setUint32(
    4,
    fenced
      ? CtrlFlag.FENCE | (rng.chance(0.2) ? CtrlFlag.INFO_RING_IDX : 0)
      : rng.chance(0.05)
        ? rng.u32()
        : 0,
    true,
  );
  view.setUint32(8, rng.u32(), true);
  view.setUint32(12, rng.u32(), true);
  view.setUint32(16, rng.below(4), true);
  view.setUint8(20, rng.below(64));
  words.forEach((w, i) => view.setUint32(HDR_SIZE + 4 * i, w >>> 0, true));
  if (tail) out.set(tail, HDR_SIZE + 4 * words.length);
  return mutate(rng, out);
}

function mutate(rng: Prng, bytes: Uint8Array): Uint8Array {
  if (!rng.chance(0.25)) return bytes;
  let out = bytes;
  switch (rng.below(4)) {
    case 0:
      for (let i = 1 + rng.below(4); i > 0; i--) out[rng.below(out.length)] = rng.below(256);
      break;
    case 1:
      out = out.slice(0, rng.below(out.length + 1));
      break;
    case 2: {
      const longer = new Uint8Array(out.length + 1 + rng.below(64));
      longer.set(out);
      for (let i = out.length; i < longer.length; i++) longer[i] = rng.below(256);
      out = longer;
      break;
    }
    default: {
      const at = 4 * rng.below(out.length >> 2);
      new DataView(out.buffer).setUint32(at, word(rng), true);
    }
  }
  return out;
}

interface Piece {
  gpa: number | bigint;
  length: number;
  write: boolean;
}

/** Splits [gpa, gpa+length) into 1..n descriptors. */
function split(rng: Prng, gpa: number, length: number, write: boolean, max: number): Piece[] {
  const pieces: Piece[] = [];
  let at = 0;
  const parts = 1 + rng.below(max);
  for (let p = 0; p < parts - 1 && at < length; p++) {
    const take = rng.below(length - at + 1);
    pieces.push({ gpa: gpa + at, length: take, write });
    at += take;
  }
  pieces.push({ gpa: gpa + at, length: length - at, write });
  return pieces;
}

/** Returns the response type, or null for a logged drop. */
function controlCase(
  bench: GpuBench,
  rng: Prng,
  pool: number,
  where: () => string,
): { type: number; response: number } | null {
  const type = rng.chance(0.93)
    ? rng.pick(COMMANDS)
    : rng.chance(0.5)
      ? word(rng, 0x400)
      : rng.u32();
  const request = buildRequest(rng, type, pool);
  const reqGpa = bench.write(request);
  const fitting = type === Cmd.GET_DISPLAY_INFO ? 408 : type === Cmd.GET_EDID ? 1056 : HDR_SIZE;
  const respSize = rng.chance(0.85) ? fitting : rng.pick([0, 8, 23, HDR_SIZE, 408, 1056, 2000]);
  const respGpa = bench.alloc.take(Math.max(1, respSize), 8);
  bench.ram.fill(0xee, respGpa, respGpa + respSize);
  let pieces = [
    ...split(rng, reqGpa, request.length, false, 4),
    ...split(rng, respGpa, respSize, true, 3),
  ];
  let malformed = false;
  if (rng.chance(0.08)) {
    malformed = true;
    const victim = pieces[rng.below(pieces.length)]!;
    switch (rng.below(4)) {
      case 0:
        victim.gpa = (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
        break;
      case 1:
        victim.length = rng.u32();
        break;
      case 2:
        victim.gpa = LOW_END + rng.below(HIGH_START - LOW_END);
        break;
      default:
        victim.write = !victim.write;
    }
    pieces = pieces.map((p) => ({ ...p }));
  }
  const ring = bench.control;
  let head: number;
  if (rng.chance(0.2)) {
    head = ring.addIndirect(pieces);
  } else if (rng.chance(0.03)) {
    // A loop or dangling next: hand-built.
    const [a, b] = ring.claim(2);
    ring.writeDesc(a!, reqGpa, request.length, 1, b!);
    ring.writeDesc(b!, respGpa, respSize, 1 | 2, rng.chance(0.5) ? a! : 1000);
    ring.publish(a!);
    head = a!;
    malformed = true;
  } else {
    head = ring.addChain(pieces);
  }
  // The request as the device will see it (snapshot now: a malformation may have made a request
  // piece writable, and the response then overwrites it).
  const readable = pieces.filter((p) => !p.write);
  let seen: Uint8Array | null = null;
  if (readable.every((p) => typeof p.gpa === 'number' && Number(p.gpa) + p.length <= RAM_SIZE)) {
    seen = new Uint8Array(readable.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of readable) {
      seen.set(bench.ram.subarray(Number(p.gpa), Number(p.gpa) + p.length), offset);
      offset += p.length;
    }
  }
  const before = {
    dropped: bench.device.counters.dropped,
    responses: bench.device.counters.responses,
    logs: bench.logs.length,
  };
  bench.kickQueue(0);
  const used = ring.takeUsed();
  bench.alloc.reset();
  if (used.length !== 1 || used[0]!.id !== head) {
    throw new FuzzFailure(
      `${where()}: expected head ${head} back once, got ${JSON.stringify(used)}`,
    );
  }
  const length = used[0]!.length;
  const dropped = bench.device.counters.dropped - before.dropped;
  const responded = bench.device.counters.responses - before.responses;
  if (length === 0) {
    if (dropped !== 1 || responded !== 0 || bench.logs.length === before.logs) {
      throw new FuzzFailure(`${where()}: zero-length completion without a logged drop`);
    }
    return null;
  }
  if (dropped !== 0 || responded !== 1) throw new FuzzFailure(`${where()}: counters moved wrongly`);
  if (length < HDR_SIZE) throw new FuzzFailure(`${where()}: response of ${length} bytes`);
  // Gather the response the way the guest sees it (through the writable pieces).
  const written = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces.filter((p) => p.write)) {
    if (at >= length) break;
    const take = Math.min(piece.length, length - at);
    written.set(bench.ram.subarray(Number(piece.gpa), Number(piece.gpa) + take), at);
    at += take;
  }
  const view = new DataView(written.buffer);
  const responseType = view.getUint32(0, true);
  const expectedSize = RESPONSE_SIZES.get(responseType);
  if (expectedSize === undefined)
    throw new FuzzFailure(`${where()}: unknown response type 0x${responseType.toString(16)}`);
  if (expectedSize !== length)
    throw new FuzzFailure(
      `${where()}: ${length} bytes for response 0x${responseType.toString(16)}`,
    );
  if (malformed && pieces.some((p) => typeof p.gpa === 'bigint' && p.length > 0)) {
    throw new FuzzFailure(`${where()}: a chain with a wild address got a response`);
  }
  if (seen && seen.length >= HDR_SIZE) {
    const req = new DataView(seen.buffer);
    const fenced = (req.getUint32(4, true) & CtrlFlag.FENCE) !== 0;
    const echoed = (view.getUint32(4, true) & CtrlFlag.FENCE) !== 0;
    if (fenced !== echoed) throw new FuzzFailure(`${where()}: fence flag not echoed`);
    if (fenced && view.getBigUint64(8, true) !== req.getBigUint64(8, true)) {
      throw new FuzzFailure(`${where()}: fence id not echoed`);
    }
  }
  // Every resource's backing must lie inside the memfd that backs guest RAM.
  for (const id of bench.device.gpu.resourceIds()) {
    for (const range of bench.device.gpu.resource(id)!.backing) {
      if (range.offset < 0 || range.length <= 0 || range.offset + range.length > RAM_SIZE) {
        throw new FuzzFailure(
          `${where()}: resource ${id} backing ${JSON.stringify(range)} outside RAM`,
        );
      }
    }
  }
  return { type, response: responseType };
}

function cursorCase(bench: GpuBench, rng: Prng, pool: number, where: () => string): void {
  const type = rng.chance(0.9) ? rng.pick([Cmd.UPDATE_CURSOR, Cmd.MOVE_CURSOR]) : word(rng, 0x400);
  const words = [
    word(rng, 4),
    word(rng, 2000),
    word(rng, 2000),
    0,
    rng.chance(0.7) ? rng.below(6) : word(rng),
    word(rng, 64),
    word(rng, 64),
    0,
  ];
  const request = new Uint8Array(HDR_SIZE + 32);
  const view = new DataView(request.buffer);
  view.setUint32(0, type, true);
  words.forEach((w, i) => view.setUint32(HDR_SIZE + 4 * i, w >>> 0, true));
  const bytes = mutate(rng, request);
  const gpa = bench.write(bytes);
  const head = bench.cursor.addChain(split(rng, gpa, bytes.length, false, 3));
  const before = {
    dropped: bench.device.counters.dropped,
    cursor: bench.device.gpu.counters.cursorCommands,
  };
  bench.kickQueue(1);
  const used = bench.cursor.takeUsed();
  bench.alloc.reset();
  void pool;
  if (used.length !== 1 || used[0]!.id !== head || used[0]!.length !== 0) {
    throw new FuzzFailure(`${where()}: cursor chain ${head} came back as ${JSON.stringify(used)}`);
  }
  const handled =
    bench.device.gpu.counters.cursorCommands -
    before.cursor +
    (bench.device.counters.dropped - before.dropped);
  if (handled !== 1)
    throw new FuzzFailure(`${where()}: cursor request neither handled nor dropped`);
}

/** Corrupts the available ring itself on a throwaway device: the queue must stop with a log. */
function ringCorruption(rng: Prng, where: () => string): void {
  const bench = new GpuBench({ queueSize: 8 });
  const view = new DataView(bench.ramBuffer);
  if (rng.chance(0.5)) {
    view.setUint16(bench.control.availGpa + 2, 9 + rng.below(60000), true); // index jump
  } else {
    view.setUint16(bench.control.availGpa + 4, 8 + rng.below(60000), true); // head out of range
    view.setUint16(bench.control.availGpa + 2, 1, true);
  }
  bench.kickQueue(0);
  if (bench.control.takeUsed().length !== 0)
    throw new FuzzFailure(`${where()}: corrupt ring produced used entries`);
  if (!bench.logs.some((l) => l.level === 'error' && /stopped/.test(l.message))) {
    throw new FuzzFailure(`${where()}: corrupt ring not logged`);
  }
  bench.device.dispose();
}
