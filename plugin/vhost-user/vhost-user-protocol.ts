/**
 * vhost-user wire format (QEMU docs/interop/vhost-user.rst): a 12-byte header (request u32,
 * flags u32, size u32) followed by `size` payload bytes, fds passed with SCM_RIGHTS alongside.
 * Numbers are little-endian (the machines this runs on are; vhost-user says "native").
 *
 * Everything here is pure: parsers over Uint8Array, encoders returning Uint8Array.
 */

export const HEADER_SIZE = 12;
/** Largest payload we accept; the biggest real one is SET_MEM_TABLE with 8 regions (264 bytes)
 * or GET/SET_CONFIG (12 + 256). Anything far above is a broken or hostile peer. */
export const MAX_PAYLOAD = 4096;
/** Most fds one message may carry (SET_MEM_TABLE: one per region). */
export const MAX_FDS_PER_MESSAGE = 32;

export const Flags = {
  VERSION_MASK: 0x3,
  VERSION: 0x1,
  REPLY: 0x4,
  NEED_REPLY: 0x8,
} as const;

/** Front-end -> back-end requests. */
export const Request = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

export function requestName(request: number): string {
  for (const [name, value] of Object.entries(Request)) if (value === request) return name;
  return `UNKNOWN(${request})`;
}

/** Virtio feature bits (as bigint masks). */
export const Feature = {
  VIRTIO_GPU_F_VIRGL: 1n << 0n,
  VIRTIO_GPU_F_EDID: 1n << 1n,
  VIRTIO_GPU_F_RESOURCE_UUID: 1n << 2n,
  VIRTIO_GPU_F_RESOURCE_BLOB: 1n << 3n,
  VIRTIO_GPU_F_CONTEXT_INIT: 1n << 4n,
  RING_INDIRECT_DESC: 1n << 28n,
  RING_EVENT_IDX: 1n << 29n,
  VHOST_USER_F_PROTOCOL_FEATURES: 1n << 30n,
  VERSION_1: 1n << 32n,
  RING_RESET: 1n << 40n,
} as const;

/** vhost-user protocol feature bits (as bigint masks). */
export const ProtocolFeature = {
  MQ: 1n << 0n,
  REPLY_ACK: 1n << 3n,
  CONFIG: 1n << 9n,
  RESET_DEVICE: 1n << 13n,
  CONFIGURE_MEM_SLOTS: 1n << 15n,
  STATUS: 1n << 16n,
} as const;

/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 queue index, bit 8 "no fd" (polling / no notify). */
export const VRING_IDX_MASK = 0xffn;
export const VRING_NOFD_MASK = 0x100n;

export interface Message {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** Fds that came with the message; owned by whoever holds the message. */
  fds: number[];
}

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export interface Header {
  request: number;
  flags: number;
  size: number;
}

export function parseHeader(bytes: Uint8Array): Header {
  if (bytes.length < HEADER_SIZE) throw new ProtocolError('short vhost-user header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  return {
    request: view.getUint32(0, true),
    flags: view.getUint32(4, true),
    size: view.getUint32(8, true),
  };
}

export function encodeMessage(request: number, flags: number, payload?: Uint8Array): Uint8Array {
  const size = payload?.length ?? 0;
  const out = new Uint8Array(HEADER_SIZE + size);
  const view = new DataView(out.buffer);
  view.setUint32(0, request, true);
  view.setUint32(4, flags, true);
  view.setUint32(8, size, true);
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}

/** A reply to `request`: version 1 with the reply bit. */
export function encodeReply(request: number, payload: Uint8Array): Uint8Array {
  return encodeMessage(request, Flags.VERSION | Flags.REPLY, payload);
}

export function u64Payload(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  return out;
}

/**
 * Reassembles messages from a byte stream. Fds received with a chunk belong to the message the
 * chunk's first byte belongs to (the live reader asks for at most one message's bytes per
 * recvmsg, and the kernel never merges data across SCM_RIGHTS boundaries, so this is exact).
 * `push` takes ownership of the fds: those of completed messages go with the message, the rest
 * are closed by `dispose`. Header errors throw ProtocolError (the connection must be dropped).
 */
export class FrameReader {
  private header: Header | null = null;
  private readonly headerBytes = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private payload: Uint8Array | null = null;
  private payloadFill = 0;
  private fds: number[] = [];

  /**
   * @param checkVersion vhost-user carries a version in flags; vhost-user-gpu does not.
   */
  constructor(
    private readonly closeFd: (fd: number) => void,
    private readonly maxPayload = MAX_PAYLOAD,
    private readonly checkVersion = true,
  ) {}

  /** How many bytes complete the current header or payload (a good recv size). */
  wanted(): number {
    if (!this.header) return HEADER_SIZE - this.headerFill;
    return Math.max(1, this.header.size - this.payloadFill);
  }

  push(data: Uint8Array, fds: number[]): Message[] {
    this.fds.push(...fds);
    if (this.fds.length > MAX_FDS_PER_MESSAGE) {
      throw new ProtocolError(`more than ${MAX_FDS_PER_MESSAGE} fds with one message`);
    }
    const out: Message[] = [];
    try {
      this.parseInto(data, out);
    } catch (error) {
      // The messages completed before the bad one are never delivered: their fds are ours.
      for (const message of out) for (const fd of message.fds) this.closeFd(fd);
      throw error;
    }
    return out;
  }

  private parseInto(data: Uint8Array, out: Message[]): void {
    let at = 0;
    while (at < data.length || (this.header && this.header.size === this.payloadFill)) {
      if (!this.header) {
        const take = Math.min(HEADER_SIZE - this.headerFill, data.length - at);
        this.headerBytes.set(data.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        if (this.headerFill < HEADER_SIZE) break;
        const header = parseHeader(this.headerBytes);
        if (this.checkVersion && (header.flags & Flags.VERSION_MASK) !== Flags.VERSION) {
          throw new ProtocolError(
            `unsupported vhost-user version in flags 0x${header.flags.toString(16)}`,
          );
        }
        if (header.size > this.maxPayload) {
          throw new ProtocolError(`payload of ${header.size} bytes exceeds ${this.maxPayload}`);
        }
        this.header = header;
        this.payload = new Uint8Array(header.size);
        this.payloadFill = 0;
      }
      const header = this.header;
      const payload = this.payload!;
      const take = Math.min(header.size - this.payloadFill, data.length - at);
      payload.set(data.subarray(at, at + take), this.payloadFill);
      this.payloadFill += take;
      at += take;
      if (this.payloadFill < header.size) break;
      out.push({ request: header.request, flags: header.flags, payload, fds: this.fds });
      this.fds = [];
      this.header = null;
      this.payload = null;
      this.headerFill = 0;
      this.payloadFill = 0;
    }
  }

  /** True when no partial message is buffered. */
  idle(): boolean {
    return this.header === null && this.headerFill === 0;
  }

  dispose(): void {
    for (const fd of this.fds) this.closeFd(fd);
    this.fds = [];
  }
}

// ---------------------------------------------------------------------------------------------
// Payload parsers. Each checks the size it needs and throws ProtocolError otherwise.
// ---------------------------------------------------------------------------------------------

function viewOf(payload: Uint8Array, need: number, what: string): DataView {
  if (payload.length < need) {
    throw new ProtocolError(`${what}: payload of ${payload.length} bytes, need ${need}`);
  }
  return new DataView(payload.buffer, payload.byteOffset, payload.length);
}

export function parseU64(payload: Uint8Array, what = 'u64'): bigint {
  return viewOf(payload, 8, what).getBigUint64(0, true);
}

export interface VringState {
  index: number;
  num: number;
}

export function parseVringState(payload: Uint8Array): VringState {
  const view = viewOf(payload, 8, 'vring state');
  return { index: view.getUint32(0, true), num: view.getUint32(4, true) };
}

export function encodeVringState(state: VringState): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, state.index, true);
  view.setUint32(4, state.num, true);
  return out;
}

export interface VringAddr {
  index: number;
  flags: number;
  /** QEMU virtual addresses (user addresses) of the three ring parts. */
  descUser: bigint;
  usedUser: bigint;
  availUser: bigint;
  logGuest: bigint;
}

export function parseVringAddr(payload: Uint8Array): VringAddr {
  const view = viewOf(payload, 40, 'vring address');
  return {
    index: view.getUint32(0, true),
    flags: view.getUint32(4, true),
    descUser: view.getBigUint64(8, true),
    usedUser: view.getBigUint64(16, true),
    availUser: view.getBigUint64(24, true),
    logGuest: view.getBigUint64(32, true),
  };
}

/** The front-end's side of SET_VRING_ADDR (tests and benches speak it as QEMU does). */
export function encodeVringAddr(
  addr: Pick<VringAddr, 'index' | 'descUser' | 'usedUser' | 'availUser'> & Partial<VringAddr>,
): Uint8Array {
  const out = new Uint8Array(40);
  const view = new DataView(out.buffer);
  view.setUint32(0, addr.index, true);
  view.setUint32(4, addr.flags ?? 0, true);
  view.setBigUint64(8, addr.descUser, true);
  view.setBigUint64(16, addr.usedUser, true);
  view.setBigUint64(24, addr.availUser, true);
  view.setBigUint64(32, addr.logGuest ?? 0n, true);
  return out;
}

export interface VringFdRequest {
  index: number;
  /** The "invalid fd" flag: no fd is passed. */
  noFd: boolean;
}

export function parseVringFd(payload: Uint8Array): VringFdRequest {
  const value = parseU64(payload, 'vring fd');
  return { index: Number(value & VRING_IDX_MASK), noFd: (value & VRING_NOFD_MASK) !== 0n };
}

/** One memory region description (32 bytes on the wire). All values as sent, unchecked. */
export interface WireMemoryRegion {
  guestAddr: bigint;
  size: bigint;
  userAddr: bigint;
  mmapOffset: bigint;
}

function readRegion(view: DataView, at: number): WireMemoryRegion {
  return {
    guestAddr: view.getBigUint64(at, true),
    size: view.getBigUint64(at + 8, true),
    userAddr: view.getBigUint64(at + 16, true),
    mmapOffset: view.getBigUint64(at + 24, true),
  };
}

export const MAX_MEM_TABLE_REGIONS = 8;

export function parseMemTable(payload: Uint8Array): WireMemoryRegion[] {
  const view = viewOf(payload, 8, 'memory table');
  const count = view.getUint32(0, true);
  if (count > MAX_MEM_TABLE_REGIONS) {
    throw new ProtocolError(`memory table with ${count} regions (max ${MAX_MEM_TABLE_REGIONS})`);
  }
  viewOf(payload, 8 + 32 * count, 'memory table');
  const regions: WireMemoryRegion[] = [];
  for (let i = 0; i < count; i++) regions.push(readRegion(view, 8 + 32 * i));
  return regions;
}

export function encodeMemTable(regions: WireMemoryRegion[]): Uint8Array {
  const out = new Uint8Array(8 + 32 * MAX_MEM_TABLE_REGIONS);
  const view = new DataView(out.buffer);
  view.setUint32(0, regions.length, true);
  regions.forEach((region, i) => writeRegion(view, 8 + 32 * i, region));
  return out;
}

function writeRegion(view: DataView, at: number, region: WireMemoryRegion): void {
  view.setBigUint64(at, region.guestAddr, true);
  view.setBigUint64(at + 8, region.size, true);
  view.setBigUint64(at + 16, region.userAddr, true);
  view.setBigUint64(at + 24, region.mmapOffset, true);
}

/** ADD_MEM_REG / REM_MEM_REG: 8 bytes padding, then one region. */
export function parseSingleRegion(payload: Uint8Array): WireMemoryRegion {
  const view = viewOf(payload, 40, 'memory region');
  return readRegion(view, 8);
}

export function encodeSingleRegion(region: WireMemoryRegion): Uint8Array {
  const out = new Uint8Array(40);
  writeRegion(new DataView(out.buffer), 8, region);
  return out;
}

export const MAX_CONFIG_SIZE = 256;

export interface ConfigRequest {
  offset: number;
  size: number;
  flags: number;
  data: Uint8Array;
}

export function parseConfig(payload: Uint8Array): ConfigRequest {
  const view = viewOf(payload, 12, 'device config');
  const offset = view.getUint32(0, true);
  const size = view.getUint32(4, true);
  const flags = view.getUint32(8, true);
  if (size > MAX_CONFIG_SIZE) throw new ProtocolError(`config size ${size} > ${MAX_CONFIG_SIZE}`);
  viewOf(payload, 12 + size, 'device config');
  return { offset, size, flags, data: payload.subarray(12, 12 + size) };
}

export function encodeConfig(request: ConfigRequest): Uint8Array {
  const out = new Uint8Array(12 + request.size);
  const view = new DataView(out.buffer);
  view.setUint32(0, request.offset, true);
  view.setUint32(4, request.size, true);
  view.setUint32(8, request.flags, true);
  out.set(request.data.subarray(0, request.size), 12);
  return out;
}
