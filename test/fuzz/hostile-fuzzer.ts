/**
 * Fuzzer for what a hostile guest (or its QEMU) controls beyond single commands (issue 12):
 * - vhost-user framing: random byte streams split at random points, with random fd counts;
 *   the reader yields messages or a ProtocolError, and every fd it was given is either in a
 *   message or closed;
 * - vhost-user messages with random payload sizes and fds to a GPU device, and memory changes
 *   between commands (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG; built or random payloads):
 *   regions inside, straddling or past the end of their memfd, empty or huge, at overflow-prone
 *   offsets and addresses, on short memfds, eventfds and pipes. Nothing is ever mapped past the
 *   end of a file, each region lies in a regular file, every fd is held or closed, a refused
 *   change leaves the table as it was; the device never throws and, once disposed, holds no fd;
 * - backing storms: many resources per device, overlapping, huge and scattered entry lists of
 *   up to 16,384 entries; every kept backing is within its resource's page-rounded size and the
 *   device's span and byte limits;
 * - the shared-BAR header read while a concurrent writer changes it (a snapshot copied in
 *   random pieces with writes in between): parsing never throws, and a header it accepts
 *   describes a framebuffer, damage and cursor inside the BAR.
 */
import {
  Cmd,
  encodeMemEntries,
  encodeRequest,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  encodeMemTable,
  encodeMessage,
  encodeSingleRegion,
  Flags,
  FrameReader,
  MAX_FDS_PER_MESSAGE,
  MAX_MEM_TABLE_REGIONS,
  ProtocolError,
  Request,
  requestName,
  u64Payload,
  type WireMemoryRegion,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import {
  BAR_HEADER_PAGE,
  Field,
  parseBarHeader,
  writeBarHeader,
} from '../../plugin/sources/shared-bar/header.js';
import { GpuBench, HIGH_START, RAM_SIZE, USER_BASE, message } from '../unit/virtio-gpu-harness.js';
import { FuzzFailure, Prng } from './virtio-gpu-fuzzer.js';

export interface HostileFuzzResult {
  cases: number;
  framing: { cases: number; messages: number; protocolErrors: number; fds: number };
  messages: {
    cases: number;
    memTables: number;
    regionChanges: number;
    memoryAccepted: number;
    memoryRefused: number;
    devices: number;
  };
  backing: { cases: number; kept: number; refused: number; maxResources: number };
  bar: { cases: number; ok: number; writing: number; invalid: number; empty: number };
}

export interface HostileFuzzOptions {
  seed: number;
  cases: number;
  onProgress?: (done: number) => void;
}

const REQUESTS = Object.values(Request) as number[];
const PAGE = 4096;

export function runHostileFuzz(options: HostileFuzzOptions): HostileFuzzResult {
  const rng = new Prng(options.seed);
  const result: HostileFuzzResult = {
    cases: 0,
    framing: { cases: 0, messages: 0, protocolErrors: 0, fds: 0 },
    messages: {
      cases: 0,
      memTables: 0,
      regionChanges: 0,
      memoryAccepted: 0,
      memoryRefused: 0,
      devices: 0,
    },
    backing: { cases: 0, kept: 0, refused: 0, maxResources: 0 },
    bar: { cases: 0, ok: 0, writing: 0, invalid: 0, empty: 0 },
  };
  let device: GpuBench | null = null;
  let storm: GpuBench | null = null;
  for (let index = 0; index < options.cases; index++) {
    const where = () => `seed ${options.seed}, case ${index}`;
    try {
      const kind = rng.below(100);
      if (kind < 38) {
        framingCase(rng, result, where);
      } else if (kind < 70) {
        barCase(rng, result, where);
      } else if (kind < 96) {
        if (!device || rng.chance(0.002)) {
          if (device) disposeChecked(device, where);
          device = new GpuBench({ blob: rng.chance(0.5) });
          result.messages.devices++;
        }
        messageCase(device, rng, result, where);
      } else {
        if (!storm || rng.chance(0.05)) {
          if (storm) disposeChecked(storm, where);
          storm = new GpuBench({ blob: rng.chance(0.5) });
        }
        backingCase(storm, rng, result, where);
      }
    } catch (error) {
      if (error instanceof FuzzFailure) throw error;
      throw new FuzzFailure(`${where()}: threw: ${(error as Error).stack ?? String(error)}`);
    }
    result.cases++;
    if (options.onProgress && index % 10000 === 9999) options.onProgress(index + 1);
  }
  if (device) disposeChecked(device, () => `seed ${options.seed}, end`);
  if (storm) disposeChecked(storm, () => `seed ${options.seed}, end`);
  return result;
}

/** After dispose the device holds no fd: only the bench's own memfd, kicks and calls are open. */
function disposeChecked(bench: GpuBench, where: () => string): void {
  bench.device.dispose();
  if (bench.fds.files.size !== 5) {
    throw new FuzzFailure(`${where()}: ${bench.fds.files.size - 5} fds left open after dispose`);
  }
  if (bench.fds.mappings.size !== 0) {
    throw new FuzzFailure(`${where()}: ${bench.fds.mappings.size} mappings left after dispose`);
  }
}

function framingCase(rng: Prng, result: HostileFuzzResult, where: () => string): void {
  result.framing.cases++;
  let next = 1;
  const given = new Set<number>();
  const closed = new Set<number>();
  const reader = new FrameReader((fd) => {
    if (!given.has(fd) || closed.has(fd))
      throw new FuzzFailure(`${where()}: closed fd ${fd} twice or unknown`);
    closed.add(fd);
  });
  // A stream of messages, some well-formed, some with hostile sizes or flags.
  const parts: Uint8Array[] = [];
  for (let m = rng.below(4); m >= 0; m--) {
    const size = rng.chance(0.8) ? rng.below(64) : rng.pick([4096, 4097, 0xffffffff, rng.u32()]);
    const payload = new Uint8Array(Math.min(size, 5000));
    const bytes = encodeMessage(
      rng.chance(0.9) ? rng.pick(REQUESTS) : rng.u32(),
      rng.chance(0.9) ? Flags.VERSION : rng.u32(),
      payload,
    );
    if (size !== payload.length) new DataView(bytes.buffer).setUint32(8, size >>> 0, true);
    parts.push(bytes);
  }
  const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    stream.set(p, at);
    at += p.length;
  }
  if (rng.chance(0.1)) stream[rng.below(stream.length)] = rng.below(256);
  const received = new Set<number>();
  try {
    let offset = 0;
    while (offset < stream.length) {
      const take = rng.chance(0.5) ? stream.length - offset : 1 + rng.below(stream.length - offset);
      const count = rng.chance(0.7)
        ? 0
        : rng.chance(0.9)
          ? rng.below(4)
          : rng.below(MAX_FDS_PER_MESSAGE + 8);
      const fds = Array.from({ length: count }, () => next++);
      for (const fd of fds) given.add(fd);
      result.framing.fds += fds.length;
      for (const msg of reader.push(stream.subarray(offset, offset + take), fds)) {
        result.framing.messages++;
        for (const fd of msg.fds) received.add(fd);
      }
      offset += take;
    }
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    result.framing.protocolErrors++;
  }
  reader.dispose();
  // Every fd given is the reader's until it is delivered in a message: after dispose each one
  // was delivered or closed, never both, never neither (even after a ProtocolError).
  for (const fd of given) {
    if (received.has(fd) === closed.has(fd)) {
      throw new FuzzFailure(
        `${where()}: fd ${fd} ${received.has(fd) ? 'delivered and closed' : 'leaked'}`,
      );
    }
  }
}

/** Files a front-end may offer as guest memory besides the bench's RAM: empty, short, odd-sized. */
const SHORT_FILES = [0, PAGE, 6000, 64 * 1024].map((size) => new ArrayBuffer(size));
const U64_MAX = 2n ** 64n - 1n;
/** Values at the edges of the arithmetic: 2^53 (exact numbers), 2^63 (sign), 2^64 (wrap). */
const HUGE = [2n ** 53n - BigInt(PAGE), 2n ** 53n, 2n ** 63n, U64_MAX - BigInt(PAGE) + 1n, U64_MAX];

/**
 * One fd a front-end hands over as guest memory, and the size of the file behind it (what the
 * regions are drawn around): mostly the bench's RAM memfd, else a short or empty memfd, an
 * eventfd or a pipe (no file at all: their "size" is the RAM's, as if the sender meant it).
 */
function memoryFd(bench: GpuBench, rng: Prng): { fd: number; fileSize: number } {
  const kind = rng.below(20);
  if (kind < 12) return { fd: bench.fds.dup(bench.memfd), fileSize: RAM_SIZE };
  if (kind < 17) {
    const buffer = rng.pick(SHORT_FILES);
    return { fd: bench.fds.memfd(buffer), fileSize: buffer.byteLength };
  }
  return { fd: kind < 19 ? bench.fds.eventfd() : bench.fds.pipe(), fileSize: RAM_SIZE };
}

/**
 * A memory region of a file of `fileSize` bytes: inside it, straddling or past its end, empty,
 * huge, at unaligned or overflow-prone offsets, and at guest and user addresses that are
 * ordinary, misplaced or near 2^53 / 2^64.
 */
function randomRegion(rng: Prng, fileSize: number): WireMemoryRegion {
  const pages = Math.floor(fileSize / PAGE);
  let mmapOffset: bigint;
  switch (rng.below(10)) {
    case 6:
      mmapOffset = BigInt(fileSize); // at the very end
      break;
    case 7:
      mmapOffset = BigInt(fileSize + PAGE * (1 + rng.below(16))); // past the end
      break;
    case 8:
      mmapOffset = BigInt(rng.below(fileSize + 1)); // unaligned
      break;
    case 9:
      mmapOffset = rng.pick(HUGE);
      break;
    default:
      mmapOffset = BigInt(PAGE * rng.below(pages + 1));
  }
  const room = mmapOffset <= BigInt(fileSize) ? fileSize - Number(mmapOffset) : 0;
  let size: bigint;
  switch (rng.below(12)) {
    case 6:
      size = BigInt(room + PAGE * (1 + rng.below(4))); // straddles the end
      break;
    case 7:
      size = BigInt(room + 1); // one byte too long
      break;
    case 8:
      size = 0n;
      break;
    case 9:
      size = rng.pick(HUGE);
      break;
    case 10:
      size = BigInt(fileSize); // the whole file, from wherever the offset is
      break;
    case 11:
      size = rng.chance(0.5) ? 1n : BigInt(1 + rng.below(Math.max(1, room)));
      break;
    default:
      size = BigInt(PAGE * (1 + rng.below(Math.max(1, Math.floor(room / PAGE))))); // fits (mostly)
  }
  const guestAddr = rng.chance(0.7)
    ? BigInt(PAGE * rng.below(2 * (RAM_SIZE / PAGE)))
    : rng.chance(0.5)
      ? BigInt(rng.u32()) * BigInt(PAGE)
      : rng.chance(0.5)
        ? rng.pick(HUGE)
        : (U64_MAX - size + 1n) & U64_MAX; // ends exactly at 2^64
  const userAddr = rng.chance(0.8)
    ? BigInt(USER_BASE) + guestAddr
    : rng.chance(0.5)
      ? BigInt(rng.u32()) << 32n
      : rng.pick(HUGE);
  return {
    guestAddr: guestAddr & U64_MAX,
    size: size & U64_MAX,
    userAddr: userAddr & U64_MAX,
    mmapOffset: mmapOffset & U64_MAX,
  };
}

/** The u64 REPLY_ACK answer to a NEED_REPLY message: 0 done, else failed; null without one. */
function ackOf(reply: Uint8Array | null): bigint | null {
  if (!reply || reply.length < 20) return null;
  return new DataView(reply.buffer, reply.byteOffset).getBigUint64(12, true);
}

/**
 * A memory message (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG) built from random regions and fds,
 * or with a random payload; then what must hold whatever it carried: nothing is mapped past the
 * end of a file (the stand-in mmap counts such maps, real mmap would grant them and SIGBUS on the
 * tail), every region lies inside a regular file, each fd the message brought is held by a region
 * or closed, and a refused message left the table exactly as it was.
 */
function memoryCase(
  bench: GpuBench,
  rng: Prng,
  result: HostileFuzzResult,
  where: () => string,
): void {
  const memory = bench.device.memory;
  const before = [...memory.regions];
  const filesBefore = bench.fds.files.size;
  const kind = rng.below(10);
  const needReply = rng.chance(0.9);
  // A random SET_PROTOCOL_FEATURES may have turned REPLY_ACK off; the answer is what is checked.
  if (needReply) bench.send(Request.SET_PROTOCOL_FEATURES, u64Payload(0xffffn));
  let request: number;
  let payload: Uint8Array;
  const fds: number[] = [];
  let wire: WireMemoryRegion[] = [];
  if (kind < 5) {
    request = Request.SET_MEM_TABLE;
    for (let i = 1 + rng.below(rng.chance(0.9) ? 3 : MAX_MEM_TABLE_REGIONS); i > 0; i--) {
      const file = memoryFd(bench, rng);
      fds.push(file.fd);
      wire.push(randomRegion(rng, file.fileSize));
    }
    // Now and then one fd too many or too few.
    const miscount = rng.below(20);
    if (miscount === 0) fds.push(bench.fds.dup(bench.memfd));
    else if (miscount === 1) bench.fds.close(fds.pop()!);
    const table = encodeMemTable(wire);
    payload = rng.chance(0.95) ? table : table.subarray(0, rng.below(table.length + 1));
    result.messages.memTables++;
  } else if (kind < 8) {
    request = kind < 7 ? Request.ADD_MEM_REG : Request.REM_MEM_REG;
    const existing = request === Request.REM_MEM_REG && before.length > 0 && rng.chance(0.7);
    if (existing) {
      const region = rng.pick(before);
      wire = [
        {
          guestAddr: BigInt(region.guestAddr),
          size: BigInt(region.size),
          userAddr: BigInt(region.userAddr),
          mmapOffset: BigInt(region.mmapOffset),
        },
      ];
    } else {
      const file = memoryFd(bench, rng);
      wire = [randomRegion(rng, file.fileSize)];
      if (request === Request.ADD_MEM_REG && rng.chance(0.95)) fds.push(file.fd);
      else bench.fds.close(file.fd);
    }
    for (let extra = rng.chance(0.9) ? 0 : rng.below(4); extra > 0; extra--) {
      fds.push(memoryFd(bench, rng).fd);
    }
    const single = encodeSingleRegion(wire[0]!);
    payload = rng.chance(0.95) ? single : single.subarray(0, rng.below(single.length + 1));
    result.messages.regionChanges++;
  } else {
    // Random bytes: a region count, addresses and sizes as they fall.
    request = rng.pick([Request.SET_MEM_TABLE, Request.ADD_MEM_REG, Request.REM_MEM_REG]);
    payload = new Uint8Array(rng.chance(0.5) ? rng.pick([8, 40, 72, 8 + 32 * 8]) : rng.below(300));
    for (let i = 0; i < payload.length; i++) payload[i] = rng.chance(0.5) ? 0 : rng.below(256);
    if (payload.length >= 4 && rng.chance(0.7))
      new DataView(payload.buffer).setUint32(0, rng.below(4), true);
    for (let n = rng.below(4); n > 0; n--) fds.push(memoryFd(bench, rng).fd);
  }
  const reply = bench.device.handle(message(request, payload, fds, needReply));
  const ack = ackOf(reply);
  const fail = (what: string): never => {
    throw new FuzzFailure(`${where()}: ${requestName(request)}: ${what}`);
  };
  if (bench.fds.mapsPastEnd !== 0) fail('mapped past the end of its file');
  const after = memory.regions;
  for (const region of after) {
    const file = bench.fds.files.get(region.fd);
    if (file?.kind !== 'mem') fail(`region at gpa ${region.guestAddr} on a non-file fd`);
    const fileSize = bench.fds.fileSize(region.fd);
    if (region.size <= 0 || region.mmapOffset + region.size > fileSize) {
      fail(`region [${region.mmapOffset}, +${region.size}) of a ${fileSize}-byte file`);
    }
    if (region.bytes.length !== region.size) fail('region view shorter than the region');
  }
  // Each fd the message brought is now a region's or closed; each region it dropped, closed.
  if (bench.fds.files.size - filesBefore !== after.length - before.length) {
    fail(`${bench.fds.files.size - filesBefore} fds for ${after.length - before.length} regions`);
  }
  if (ack !== null && ack !== 0n) {
    result.messages.memoryRefused++;
    if (after.length !== before.length || after.some((r, i) => r !== before[i])) {
      fail('a refused message changed the memory table');
    }
  } else if (ack === 0n) {
    result.messages.memoryAccepted++;
    if (request === Request.SET_MEM_TABLE && payload.length >= 8) {
      const count = new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
      if (after.length !== count) fail(`accepted a table of ${count} as ${after.length} regions`);
    }
  }
  if (needReply && ack === null) fail('no REPLY_ACK answer');
}

function messageCase(
  bench: GpuBench,
  rng: Prng,
  result: HostileFuzzResult,
  where: () => string,
): void {
  result.messages.cases++;
  if (rng.chance(0.4)) {
    // A memory change mid-run, then commands that may land in or out of the new table.
    memoryCase(bench, rng, result, where);
    const res = 1 + rng.below(8);
    bench.device.gpu.handleControl(encodeRequest(Cmd.RESOURCE_CREATE_2D, [res, 2, 64, 64]));
    bench.device.gpu.handleControl(
      encodeRequest(
        Cmd.RESOURCE_ATTACH_BACKING,
        [res, 1],
        {},
        encodeMemEntries([{ addr: HIGH_START + PAGE * rng.below(64), length: 64 * 64 * 4 }]),
      ),
    );
    return;
  }
  const request = rng.chance(0.95) ? rng.pick(REQUESTS) : rng.u32();
  const size = rng.chance(0.7) ? rng.pick([0, 8, 12, 40, 64]) : rng.below(300);
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = rng.chance(0.7) ? 0 : rng.below(256);
  if (size >= 4 && rng.chance(0.7)) new DataView(payload.buffer).setUint32(0, rng.below(3), true);
  const fdCount = rng.chance(0.6) ? 0 : rng.below(rng.chance(0.9) ? 3 : 12);
  const fds = Array.from({ length: fdCount }, () =>
    rng.chance(0.4)
      ? bench.fds.eventfd()
      : rng.chance(0.8)
        ? bench.fds.dup(bench.memfd)
        : memoryFd(bench, rng).fd,
  );
  bench.device.handle(message(request, payload, fds, rng.chance(0.5)));
  if (bench.fds.mapsPastEnd !== 0) {
    throw new FuzzFailure(`${where()}: ${requestName(request)}: mapped past the end of a file`);
  }
}

function backingCase(
  bench: GpuBench,
  rng: Prng,
  result: HostileFuzzResult,
  where: () => string,
): void {
  result.backing.cases++;
  const gpu = bench.device.gpu;
  const id = 1 + rng.below(rng.chance(0.95) ? 16 : 4200);
  if (rng.chance(0.3)) {
    const w = rng.chance(0.8) ? 1 + rng.below(256) : rng.pick([8192, 16384, 1]);
    const h = rng.chance(0.8) ? 1 + rng.below(256) : rng.pick([8192, 16384, 1]);
    gpu.handleControl(encodeRequest(Cmd.RESOURCE_CREATE_2D, [id, 2, w, h]));
  } else if (rng.chance(0.2)) {
    gpu.handleControl(encodeRequest(Cmd.RESOURCE_DETACH_BACKING, [id, 0]));
  } else {
    const count = rng.chance(0.8)
      ? 1 + rng.below(16)
      : rng.pick([16384, 16385, 1 + rng.below(16384)]);
    const style = rng.below(4);
    const entries = [];
    const listed = Math.min(count, 16384);
    for (let i = 0; i < listed; i++) {
      let addr: number;
      let length = PAGE;
      if (style === 0)
        addr = HIGH_START + (i % 2) * PAGE; // alternating: overlapping
      else if (style === 1)
        addr = HIGH_START + 2 * PAGE * (i % 900); // scattered
      else if (style === 2) {
        addr = HIGH_START + PAGE * rng.below(1800);
        length = rng.chance(0.9) ? PAGE * (1 + rng.below(4)) : rng.u32();
      } else {
        addr = HIGH_START + PAGE * i; // contiguous (one span)
      }
      entries.push({ addr, length });
    }
    const before = gpu.resource(id)?.backing.length ?? 0;
    const response = gpu.handleControl(
      encodeRequest(Cmd.RESOURCE_ATTACH_BACKING, [id, count], {}, encodeMemEntries(entries)),
    );
    const ok = new DataView(response.buffer, response.byteOffset).getUint32(0, true) === 0x1100;
    if (ok) result.backing.kept++;
    else result.backing.refused++;
    if (!ok && (gpu.resource(id)?.backing.length ?? 0) !== before) {
      throw new FuzzFailure(`${where()}: a refused attach changed resource ${id}'s backing`);
    }
  }
  const ids = gpu.resourceIds();
  result.backing.maxResources = Math.max(result.backing.maxResources, ids.length);
  if (ids.length > gpu.limits.maxResources)
    throw new FuzzFailure(`${where()}: ${ids.length} resources`);
  let spans = 0;
  let bytes = 0;
  for (const rid of ids) {
    const res = gpu.resource(rid)!;
    const held = res.backing.reduce((n, r) => n + r.length, 0);
    spans += res.backing.length;
    bytes += held;
    const needed = res.kind === 'blob' ? res.size : res.stride * res.height;
    if (held > Math.ceil(needed / PAGE) * PAGE) {
      throw new FuzzFailure(`${where()}: resource ${rid} holds ${held} bytes for ${needed}`);
    }
    for (const range of res.backing) {
      if (range.offset < 0 || range.offset + range.length > RAM_SIZE) {
        throw new FuzzFailure(`${where()}: resource ${rid} backing outside guest RAM`);
      }
    }
  }
  if (spans > gpu.limits.maxTotalSpans || bytes > gpu.limits.maxTotalBackingBytes) {
    throw new FuzzFailure(`${where()}: ${spans} spans, ${bytes} bytes held`);
  }
}

const BAR_SIZE = 1 << 20;
const barMemory = new Uint8Array(BAR_HEADER_PAGE);
const barLive = new DataView(barMemory.buffer);
const barSnapshot = new Uint8Array(BAR_HEADER_PAGE);
const snapshotView = new DataView(barSnapshot.buffer);

function barCase(rng: Prng, result: HostileFuzzResult, where: () => string): void {
  result.bar.cases++;
  const width = rng.chance(0.8) ? 1 + rng.below(512) : rng.u32();
  const height = rng.chance(0.8) ? 1 + rng.below(512) : rng.u32();
  writeBarHeader(barLive, {
    fourcc: rng.chance(0.8) ? 0x34325258 : rng.u32(),
    width,
    height,
    stride: rng.chance(0.8) ? (width * 4) >>> 0 : rng.u32(),
    offset: rng.chance(0.8) ? BAR_HEADER_PAGE : rng.u32(),
    sequence: 2 * rng.below(1000),
    damage: Array.from({ length: rng.below(4) }, () => ({
      x: rng.below(600),
      y: rng.below(600),
      width: rng.chance(0.9) ? rng.below(600) : rng.u32(),
      height: rng.below(600),
    })),
    damageCount: rng.chance(0.9) ? undefined : rng.u32(),
    cursor: {
      visible: rng.below(3),
      x: rng.u32() | 0,
      y: rng.below(600),
      width: rng.below(300),
      height: rng.below(300),
      imageOffset: rng.chance(0.7) ? BAR_HEADER_PAGE * (1 + rng.below(255)) : rng.u32(),
    },
  });
  // The reader copies the header in pieces; the writer changes fields between the pieces.
  let at = 0;
  while (at < BAR_HEADER_PAGE) {
    const take = rng.chance(0.5) ? BAR_HEADER_PAGE - at : 1 + rng.below(BAR_HEADER_PAGE - at);
    barSnapshot.set(barMemory.subarray(at, at + take), at);
    at += take;
    for (let w = rng.below(3); w > 0; w--) {
      const field = rng.pick(Object.values(Field).filter((f) => f < 352));
      barLive.setUint32(field, rng.chance(0.5) ? rng.below(1024) : rng.u32(), true);
    }
  }
  const parsed = parseBarHeader(snapshotView, BAR_SIZE);
  result.bar[parsed.status]++;
  if (parsed.status !== 'ok') return;
  const { layout, damage, cursor } = parsed.header;
  if (layout.offset < BAR_HEADER_PAGE || layout.offset + layout.span > BAR_SIZE) {
    throw new FuzzFailure(`${where()}: accepted layout ${JSON.stringify(layout, bigints)}`);
  }
  if (layout.stride * (layout.height - 1) + layout.width > layout.span) {
    throw new FuzzFailure(
      `${where()}: framebuffer past its span ${JSON.stringify(layout, bigints)}`,
    );
  }
  for (const rect of damage) {
    if (rect.x + rect.width > layout.width || rect.y + rect.height > layout.height) {
      throw new FuzzFailure(`${where()}: damage ${JSON.stringify(rect)} outside the frame`);
    }
  }
  if (cursor && cursor.imageOffset + cursor.width * cursor.height * 4 > BAR_SIZE) {
    throw new FuzzFailure(`${where()}: cursor image outside the BAR`);
  }
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
