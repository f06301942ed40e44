/**
 * Guest memory as the vhost-user front-end describes it: regions of guest-physical address space,
 * each backed by an fd (a memfd for QEMU's memory-backend-memfd) at `mmapOffset`, and mapped in
 * QEMU's own address space at `userAddr` (ring addresses come in that space).
 *
 * All wire values are u64. We accept only regions whose every address fits in a JS number
 * exactly (< 2^53), so all later arithmetic on numbers is exact: a guest value that does not fit
 * can never be inside a region and is rejected before any addition.
 */
import type { BackingRange } from '../common/backing.js';
import type { WireMemoryRegion } from './vhost-user-protocol.js';

/** Maps and unmaps region fds; production uses native mmap, tests views of plain ArrayBuffers. */
export interface RegionMapper {
  /** Returns a view of [offset, offset + length) of fd (offset is page aligned). Borrows fd. */
  map(fd: number, offset: number, length: number): Uint8Array;
  unmap(mapping: Uint8Array): void;
  /**
   * The size of the regular file behind fd (fstat's st_size). Throws for anything else: a pipe
   * or device cannot back guest memory. Borrows fd.
   */
  fileSize(fd: number): number;
}

export interface MemoryRegion {
  guestAddr: number;
  size: number;
  userAddr: number;
  mmapOffset: number;
  /** Owned by the GuestMemory (closed when the region is removed). */
  fd: number;
  /** Exactly the region's bytes. */
  bytes: Uint8Array;
  /** The mapping behind `bytes` (may start before the region, for page alignment). */
  mapping: Uint8Array;
}

/** Where a (guest-physical or user) address range lies: a region and an offset into it. */
export interface Located {
  region: MemoryRegion;
  offset: number;
}

export const MAX_REGIONS = 32;
const PAGE = 4096;

export class MemoryError extends Error {
  override name = 'MemoryError';
}

/** Parses a u64 guest/user value into a number; null when it is not exactly representable. */
export function toSafeNumber(value: bigint): number | null {
  return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

export class GuestMemory {
  private list: MemoryRegion[] = [];
  private lastHit: MemoryRegion | null = null;
  /** Bumped on every change, so users of cached views know to re-resolve. */
  generation = 0;

  constructor(
    private readonly mapper: RegionMapper,
    private readonly closeFd: (fd: number) => void,
  ) {}

  get regions(): readonly MemoryRegion[] {
    return this.list;
  }

  /**
   * Adds a region. Takes `fd` (closed here on failure, by `remove`/`clear` later).
   * Throws MemoryError for bad or overlapping regions.
   */
  add(wire: WireMemoryRegion, fd: number): MemoryRegion {
    try {
      const guestAddr = toSafeNumber(wire.guestAddr);
      const size = toSafeNumber(wire.size);
      const userAddr = toSafeNumber(wire.userAddr);
      const mmapOffset = toSafeNumber(wire.mmapOffset);
      if (guestAddr === null || size === null || userAddr === null || mmapOffset === null) {
        throw new MemoryError('memory region value does not fit 53 bits');
      }
      if (size === 0) throw new MemoryError('empty memory region');
      const max = Number.MAX_SAFE_INTEGER;
      if (guestAddr > max - size || userAddr > max - size || mmapOffset > max - size) {
        throw new MemoryError('memory region wraps');
      }
      if (this.list.length >= MAX_REGIONS)
        throw new MemoryError(`more than ${MAX_REGIONS} regions`);
      for (const other of this.list) {
        if (guestAddr < other.guestAddr + other.size && other.guestAddr < guestAddr + size) {
          throw new MemoryError('memory region overlaps another in guest-physical space');
        }
      }
      // mmap maps past the end of a file without complaint; touching that tail is SIGBUS.
      const fileSize = this.fileSizeOf(fd);
      if (size > fileSize || mmapOffset > fileSize - size) {
        throw new MemoryError(
          `memory region [${mmapOffset}, +${size}) of its fd ends past the fd's ${fileSize} bytes`,
        );
      }
      const mapStart = Math.floor(mmapOffset / PAGE) * PAGE;
      const lead = mmapOffset - mapStart;
      let mapping: Uint8Array;
      try {
        mapping = this.mapper.map(fd, mapStart, lead + size);
      } catch (error) {
        throw new MemoryError(`memory region mmap failed: ${(error as Error).message}`);
      }
      if (mapping.length < lead + size) {
        this.mapper.unmap(mapping);
        throw new MemoryError('mapping shorter than the region');
      }
      const region: MemoryRegion = {
        guestAddr,
        size,
        userAddr,
        mmapOffset,
        fd,
        mapping,
        bytes: mapping.subarray(lead, lead + size),
      };
      this.list.push(region);
      this.list.sort((a, b) => a.guestAddr - b.guestAddr);
      this.generation++;
      return region;
    } catch (error) {
      this.closeFd(fd);
      throw error;
    }
  }

  private fileSizeOf(fd: number): number {
    let size: number;
    try {
      size = this.mapper.fileSize(fd);
    } catch (error) {
      throw new MemoryError(`memory region fd: ${(error as Error).message}`);
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new MemoryError('memory region fd size');
    return size;
  }

  /**
   * Takes the region matching guest address, size and user address out of the table without
   * releasing it (its fd and mapping stay valid until `release`), or returns null.
   */
  detach(wire: WireMemoryRegion): MemoryRegion | null {
    const index = this.list.findIndex(
      (r) =>
        BigInt(r.guestAddr) === wire.guestAddr &&
        BigInt(r.size) === wire.size &&
        BigInt(r.userAddr) === wire.userAddr,
    );
    if (index < 0) return null;
    const [region] = this.list.splice(index, 1);
    this.lastHit = null;
    this.generation++;
    return region!;
  }

  /** Takes every region out of the table without releasing them. */
  detachAll(): MemoryRegion[] {
    const old = this.list;
    this.list = [];
    this.lastHit = null;
    this.generation++;
    return old;
  }

  /** Puts regions taken out with `detachAll` back (the table must be empty). */
  restore(regions: MemoryRegion[]): void {
    if (this.list.length > 0) throw new Error('restore into a table that is not empty');
    this.list = [...regions].sort((a, b) => a.guestAddr - b.guestAddr);
    this.lastHit = null;
    this.generation++;
  }

  /** Removes and releases a region; returns false if none matches. */
  remove(wire: WireMemoryRegion): boolean {
    const region = this.detach(wire);
    if (region) this.release(region);
    return region !== null;
  }

  clear(): void {
    for (const region of this.detachAll()) this.release(region);
  }

  /** Unmaps a detached region and closes its fd. */
  release(region: MemoryRegion): void {
    this.mapper.unmap(region.mapping);
    this.closeFd(region.fd);
  }

  /** The region holding guest-physical [gpa, gpa + length) entirely, or null. */
  locateGuest(gpa: number, length: number): Located | null {
    const region = this.regionOfGuest(gpa, length);
    return region ? { region, offset: gpa - region.guestAddr } : null;
  }

  /**
   * locateGuest without the result object (the virtqueue calls it per descriptor): the region,
   * or null; the offset in it is `gpa - region.guestAddr`.
   */
  regionOfGuest(gpa: number, length: number): MemoryRegion | null {
    if (!(gpa >= 0 && length >= 0 && gpa <= Number.MAX_SAFE_INTEGER)) return null;
    const hit = this.lastHit;
    if (
      hit &&
      gpa >= hit.guestAddr &&
      length <= hit.size &&
      gpa - hit.guestAddr <= hit.size - length
    ) {
      return hit;
    }
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const region = list[i]!;
      if (
        gpa >= region.guestAddr &&
        length <= region.size &&
        gpa - region.guestAddr <= region.size - length
      ) {
        this.lastHit = region;
        return region;
      }
    }
    return null;
  }

  /** The region holding QEMU-virtual [uva, uva + length) entirely, or null. */
  locateUser(uva: number, length: number): Located | null {
    if (!(uva >= 0 && length >= 0 && uva <= Number.MAX_SAFE_INTEGER)) return null;
    for (const region of this.list) {
      if (
        uva >= region.userAddr &&
        length <= region.size &&
        uva - region.userAddr <= region.size - length
      ) {
        return { region, offset: uva - region.userAddr };
      }
    }
    return null;
  }

  /** A view of guest-physical bytes (zero copy), or null when not inside one region. */
  guestBytes(gpa: number, length: number): Uint8Array | null {
    const at = this.locateGuest(gpa, length);
    return at ? at.region.bytes.subarray(at.offset, at.offset + length) : null;
  }

  userBytes(uva: number, length: number): Uint8Array | null {
    const at = this.locateUser(uva, length);
    return at ? at.region.bytes.subarray(at.offset, at.offset + length) : null;
  }

  /**
   * Where guest-physical [gpa, gpa + length) lives as fd spans: may cross from one region into
   * the next when they are contiguous in guest-physical space. Adjacent spans of the same region
   * are merged. Returns null when any byte is outside the table. fds are borrowed.
   */
  translateToFdRanges(gpa: number, length: number): BackingRange[] | null {
    const spans: Span[] = [];
    if (!this.appendSpans(gpa, length, spans)) return null;
    return spans.map(({ fd, offset, length }) => ({ fd, offset, length }));
  }

  /**
   * How many spans appendSpans would make of these entries, without making any (so a list the
   * device's limits refuse costs no objects): null when an entry leaves guest memory.
   */
  countSpans(gpas: ArrayLike<number>, lengths: ArrayLike<number>): number | null {
    let count = 0;
    let lastRegion: MemoryRegion | null = null;
    let lastEnd = 0;
    for (let i = 0; i < gpas.length; i++) {
      let at = gpas[i]!;
      let left = lengths[i]!;
      if (!(Number.isSafeInteger(at) && Number.isSafeInteger(left) && at >= 0 && left >= 0)) {
        return null;
      }
      while (left > 0) {
        const region = this.regionOfGuest(at, 1);
        if (!region) return null;
        const offset = at - region.guestAddr;
        const take = Math.min(left, region.size - offset);
        if (region !== lastRegion || lastEnd !== offset) count++;
        lastRegion = region;
        lastEnd = offset + take;
        at += take;
        left -= take;
      }
    }
    return count;
  }

  /** Appends the spans of [gpa, gpa + length) to `out` (merging with its last entry). */
  appendSpans(gpa: number, length: number, out: Span[]): boolean {
    if (!(Number.isSafeInteger(gpa) && Number.isSafeInteger(length) && gpa >= 0 && length >= 0)) {
      return false;
    }
    let at = gpa;
    let left = length;
    while (left > 0) {
      const place = this.locateGuest(at, 1);
      if (!place) return false;
      const take = Math.min(left, place.region.size - place.offset);
      const last = out[out.length - 1];
      if (
        last &&
        last.region === place.region &&
        last.regionOffset + last.length === place.offset
      ) {
        last.length += take;
      } else {
        out.push({
          fd: place.region.fd,
          offset: place.region.mmapOffset + place.offset,
          length: take,
          region: place.region,
          regionOffset: place.offset,
        });
      }
      at += take;
      left -= take;
    }
    return true;
  }
}

/** A backing span with the mapped region it lies in (for the copy fallback). */
export interface Span extends BackingRange {
  region: MemoryRegion;
  regionOffset: number;
}
