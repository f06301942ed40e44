/**
 * zwp_linux_buffer_params_v1 as a pure state machine: collects planes, validates an import
 * exactly per the protocol (and the project's linux-dmabuf checklist) and returns either the
 * buffer's attributes, a fatal protocol error code, or a non-fatal import failure.
 *
 * Fd ownership: `add` takes the plane fd (it is closed on every failure); a successful `create`
 * hands all plane fds to the returned attributes (the caller's buffer owns them from then on);
 * `destroy` closes whatever the params still hold.
 */
import { formatInfo, fourccName, planeExtent, type FormatModifierSet } from './formats.js';

/** zwp_linux_buffer_params_v1.error */
export const ParamsError = {
  ALREADY_USED: 0,
  PLANE_IDX: 1,
  PLANE_SET: 2,
  INCOMPLETE: 3,
  INVALID_FORMAT: 4,
  INVALID_DIMENSIONS: 5,
  OUT_OF_BOUNDS: 6,
  INVALID_WL_BUFFER: 7,
} as const;

/** zwp_linux_buffer_params_v1.flags */
export const ParamsFlags = {
  Y_INVERT: 1,
  INTERLACED: 2,
  BOTTOM_FIRST: 4,
} as const;

export const MAX_PLANES = 4;
const UINT32_MAX = 0xffffffffn;

/** The fd operations validation needs; injectable so the state machine runs without the addon. */
export interface ParamsFdOps {
  /** Size of the object behind fd (lseek to the end). Borrows fd. */
  fdSize(fd: number): number;
  close(fd: number): void;
}

export interface DmabufPlane {
  fd: number;
  offset: number;
  stride: number;
}

/** A validated import. Owns the plane fds. */
export interface DmabufAttributes {
  width: number;
  height: number;
  format: number;
  modifier: bigint;
  flags: number;
  planes: DmabufPlane[];
}

export type AddResult = { ok: true } | { ok: false; code: number; message: string };

export type CreateResult =
  | { ok: true; attributes: DmabufAttributes }
  /** A client bug: post this protocol error on the params object. */
  | { ok: false; fatal: true; code: number; message: string }
  /** Import failed for a reason the client could not predict: `failed` event for create,
   * INVALID_WL_BUFFER for create_immed. */
  | { ok: false; fatal: false; message: string };

interface PendingPlane extends DmabufPlane {
  modifier: bigint;
}

export class DmabufParams {
  private readonly planes: (PendingPlane | undefined)[] = new Array(MAX_PLANES).fill(undefined);
  private used = false;
  private destroyed = false;

  constructor(
    private readonly advertised: FormatModifierSet,
    private readonly fdOps: ParamsFdOps,
  ) {}

  /** zwp_linux_buffer_params_v1.add. Takes `fd`. */
  add(
    fd: number,
    planeIndex: number,
    offset: number,
    stride: number,
    modifierHi: number,
    modifierLo: number,
  ): AddResult {
    const fail = (code: number, message: string): AddResult => {
      this.fdOps.close(fd);
      return { ok: false, code, message };
    };
    if (this.used || this.destroyed) {
      return fail(ParamsError.ALREADY_USED, 'params were already used to create a wl_buffer');
    }
    if (!Number.isInteger(planeIndex) || planeIndex < 0 || planeIndex >= MAX_PLANES) {
      return fail(ParamsError.PLANE_IDX, `plane index ${planeIndex} is not below ${MAX_PLANES}`);
    }
    if (this.planes[planeIndex]) {
      return fail(ParamsError.PLANE_SET, `plane ${planeIndex} was already set`);
    }
    const modifier = (BigInt(modifierHi >>> 0) << 32n) | BigInt(modifierLo >>> 0);
    const other = this.planes.find((plane) => plane !== undefined);
    if (other && other.modifier !== modifier) {
      return fail(
        ParamsError.INVALID_FORMAT,
        `plane ${planeIndex} has modifier 0x${modifier.toString(16)}, other planes have ` +
          `0x${other.modifier.toString(16)}`,
      );
    }
    this.planes[planeIndex] = { fd, offset: offset >>> 0, stride: stride >>> 0, modifier };
    return { ok: true };
  }

  /** zwp_linux_buffer_params_v1.create / create_immed (same validation). */
  create(width: number, height: number, format: number, flags: number): CreateResult {
    const fatal = (code: number, message: string): CreateResult => ({
      ok: false,
      fatal: true,
      code,
      message,
    });
    if (this.used || this.destroyed) {
      return fatal(ParamsError.ALREADY_USED, 'params were already used to create a wl_buffer');
    }
    this.used = true;

    const count = this.planes.findLastIndex((plane) => plane !== undefined) + 1;
    if (count === 0) return fatal(ParamsError.INCOMPLETE, 'no planes were added');
    for (let index = 0; index < count; index++) {
      if (!this.planes[index]) {
        return fatal(ParamsError.INCOMPLETE, `plane ${index} is missing (planes 0..${count - 1})`);
      }
    }
    const planes = this.planes.slice(0, count) as PendingPlane[];
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      return fatal(ParamsError.INVALID_DIMENSIONS, `invalid size ${width}x${height}`);
    }
    format >>>= 0;
    const info = formatInfo.get(format);
    const modifier = planes[0].modifier;
    if (!info || !this.advertised.has(format, modifier)) {
      return fatal(
        ParamsError.INVALID_FORMAT,
        `format ${fourccName(format)} (0x${format.toString(16)}) with modifier ` +
          `0x${modifier.toString(16)} is not supported`,
      );
    }
    if (count !== info.planes.length) {
      return fatal(
        ParamsError.INCOMPLETE,
        `${info.name} needs ${info.planes.length} plane(s), got ${count}`,
      );
    }

    for (let index = 0; index < count; index++) {
      const plane = planes[index];
      const layout = info.planes[index];
      const offset = BigInt(plane.offset);
      const stride = BigInt(plane.stride);
      const rows = BigInt(planeExtent(height, layout.verticalSubsampling));
      const rowBytes = BigInt(
        planeExtent(width, layout.horizontalSubsampling) * layout.bytesPerPixel,
      );
      if (stride < rowBytes) {
        return fatal(
          ParamsError.OUT_OF_BOUNDS,
          `plane ${index}: stride ${stride} is below ${rowBytes} bytes per row`,
        );
      }
      // Last byte read: offset + stride * (rows - 1) + rowBytes; the protocol's rule is the
      // simpler offset + stride * rows, which is what clients expect to be checked.
      const end = offset + stride * rows;
      if (end > UINT32_MAX) {
        return fatal(
          ParamsError.OUT_OF_BOUNDS,
          `plane ${index}: offset + stride * height overflows`,
        );
      }
      let size: bigint;
      try {
        size = BigInt(this.fdOps.fdSize(plane.fd));
      } catch (error) {
        return {
          ok: false,
          fatal: false,
          message: `plane ${index}: size unknown: ${String(error)}`,
        };
      }
      if (end > size) {
        return fatal(
          ParamsError.OUT_OF_BOUNDS,
          `plane ${index}: offset ${offset} + stride ${stride} * ${rows} rows = ${end} is past ` +
            `the buffer's ${size} bytes`,
        );
      }
    }

    const known = ParamsFlags.Y_INVERT | ParamsFlags.INTERLACED | ParamsFlags.BOTTOM_FIRST;
    if ((flags >>> 0) & ~known) {
      return { ok: false, fatal: false, message: `unknown flags 0x${(flags >>> 0).toString(16)}` };
    }
    if (flags & ParamsFlags.INTERLACED) {
      // The protocol recommends rejecting interlaced buffers when quality cannot be guaranteed.
      return { ok: false, fatal: false, message: 'interlaced buffers are not supported' };
    }

    const attributes: DmabufAttributes = {
      width,
      height,
      format,
      modifier,
      flags: flags >>> 0,
      planes: planes.map(({ fd, offset, stride }) => ({ fd, offset, stride })),
    };
    this.planes.fill(undefined); // ownership moved to the attributes
    return { ok: true, attributes };
  }

  /** Closes every plane fd still held (not handed to a created buffer). Idempotent. */
  destroy(): void {
    this.destroyed = true;
    for (let index = 0; index < MAX_PLANES; index++) {
      const plane = this.planes[index];
      if (plane) {
        this.planes[index] = undefined;
        this.fdOps.close(plane.fd);
      }
    }
  }

  /** Fds currently held (for tests). */
  heldFds(): number[] {
    return this.planes.filter((plane) => plane !== undefined).map((plane) => plane.fd);
  }
}

/** Closes the fds of an attributes object the caller owns. */
export function closeDmabufAttributes(attributes: DmabufAttributes, fdOps: ParamsFdOps): void {
  for (const plane of attributes.planes.splice(0)) fdOps.close(plane.fd);
}
