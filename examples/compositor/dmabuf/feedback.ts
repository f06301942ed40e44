/**
 * linux-dmabuf v4 feedback, compiled once: the format table (16-byte entries: u32 format,
 * u32 padding, u64 modifier, native endian) in a sealed read-only memfd, the main device as
 * dev_t bytes, and the tranches as u16 indices into the table.
 */
import { Seal } from '../../../native/fd.js';
import type { FormatModifierSet } from './formats.js';

export const FORMAT_TABLE_ENTRY_SIZE = 16;

/** The fd operations the sealed table needs (native/fd.ts satisfies this). */
export interface FeedbackFdOps {
  memfdCreate(name: string, allowSealing: boolean): number;
  ftruncate(fd: number, size: number): void;
  pwrite(fd: number, source: Uint8Array, position: number): number;
  addSeals(fd: number, seals: number): void;
  close(fd: number): void;
}

export function encodeFormatTable(formats: FormatModifierSet): Uint8Array {
  const entries = formats.entries();
  if (entries.length > 0x10000) throw new RangeError('format table indices are 16-bit');
  const bytes = new Uint8Array(entries.length * FORMAT_TABLE_ENTRY_SIZE);
  const view = new DataView(bytes.buffer);
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  entries.forEach(({ format, modifier }, index) => {
    const base = index * FORMAT_TABLE_ENTRY_SIZE;
    view.setUint32(base, format, little);
    view.setUint32(base + 4, 0, little);
    view.setBigUint64(base + 8, modifier, little);
  });
  return bytes;
}

/** dev_t as the protocol carries it: the bytes of a native-endian 64-bit dev_t. */
export function encodeDevice(device: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, device), little);
  return bytes;
}

/** Table indices as the tranche_formats array (u16, native endian). */
export function encodeIndices(indices: readonly number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(indices).buffer);
}

export interface Tranche {
  targetDevice: Uint8Array;
  /** u16 indices into the format table. */
  formatIndices: Uint8Array;
  flags: number;
}

/** Everything a feedback object sends; the table fd is owned here (close with destroy()). */
export class CompiledFeedback {
  readonly tableFd: number;
  readonly tableSize: number;
  readonly mainDevice: Uint8Array;
  readonly tranches: readonly Tranche[];
  private closed = false;

  constructor(
    formats: FormatModifierSet,
    mainDevice: bigint,
    private readonly fdOps: FeedbackFdOps,
  ) {
    const table = encodeFormatTable(formats);
    this.tableSize = table.byteLength;
    this.tableFd = createSealedFile('guestfb-dmabuf-format-table', table, fdOps);
    this.mainDevice = encodeDevice(mainDevice);
    const all = formats.entries().map((_, index) => index);
    this.tranches = [
      { targetDevice: this.mainDevice, formatIndices: encodeIndices(all), flags: 0 },
    ];
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.fdOps.close(this.tableFd);
  }
}

/**
 * A memfd holding `contents`, sealed against shrink, grow and write, and against further seal
 * changes: clients may map it read-only and nobody can change it. Returns the fd (caller owns it).
 */
export function createSealedFile(name: string, contents: Uint8Array, fdOps: FeedbackFdOps): number {
  const memfd = fdOps.memfdCreate(name, true);
  try {
    fdOps.ftruncate(memfd, contents.byteLength);
    let written = 0;
    while (written < contents.byteLength) {
      const moved = fdOps.pwrite(memfd, contents.subarray(written), written);
      if (moved <= 0) throw new Error(`short write to ${name}`);
      written += moved;
    }
    fdOps.addSeals(memfd, Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
    return memfd;
  } catch (error) {
    fdOps.close(memfd);
    throw error;
  }
}
