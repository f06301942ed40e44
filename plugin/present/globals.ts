/**
 * Binds the globals the present layer uses and learns what the compositor accepts: wl_shm
 * formats, and linux-dmabuf formats/modifiers (v4: the default feedback's format table and
 * tranches; v3: format and modifier events; v1-2: format events, implicit modifier).
 */
import { fd } from '../../native/fd.js';
import {
  WlCompositorProxy,
  WlSeatProxy,
  WlShmProxy,
  WlSubcompositorProxy,
  XdgWmBaseProxy,
  ZwpLinuxDmabufFeedbackV1Proxy,
  ZwpLinuxDmabufV1Proxy,
} from '../../build/protocols/index.js';
import type { WaylandClient } from './connection.js';
import {
  DRM_FORMAT_MOD_INVALID,
  FormatSet,
  addTrancheFormats,
  fourccName,
  joinModifier,
  parseFormatTable,
  shmToDrmFormat,
  type FormatTableEntry,
} from '../common/formats.js';

/** Largest format table accepted (a compositor bug or attack should not map gigabytes). */
const MAX_FORMAT_TABLE = 16 * 1024 * 1024;

export interface PresentGlobals {
  compositor: WlCompositorProxy;
  wmBase: XdgWmBaseProxy | null;
  shm: WlShmProxy | null;
  dmabuf: ZwpLinuxDmabufV1Proxy | null;
  dmabufVersion: number | null;
  subcompositor: WlSubcompositorProxy | null;
  seat: WlSeatProxy | null;
  /** wl_seat capabilities sent during the bind roundtrip (the presenter listens after it). */
  seatCapabilities: number;
  /** DRM fourccs wl_shm advertised. */
  shmFormats: Set<number>;
  /** What linux-dmabuf advertised (kept current with feedback updates); null without it. */
  dmabufFormats: FormatSet | null;
  /** Problems with what the compositor sent (bad table, bad indices), for the log. */
  warnings: string[];
  /** True while the socket to the compositor is full: traffic that can wait holds back. */
  writeBlocked(): boolean;
  /** Stops listening and destroys the bound proxies. */
  destroy(): void;
}

/** Listens to a v4 feedback object, refilling `into` on every `done`. */
function followFeedback(
  feedback: ZwpLinuxDmabufFeedbackV1Proxy,
  into: FormatSet,
  warnings: string[],
): void {
  let table: FormatTableEntry[] = [];
  const pending = new FormatSet();
  feedback.setListener({
    formatTable: (tableFd, size) => {
      try {
        if (!Number.isInteger(size) || size <= 0 || size > MAX_FORMAT_TABLE) {
          warnings.push(`linux-dmabuf format table size ${size} rejected`);
          table = [];
          return;
        }
        const mapping = fd.mmap(tableFd, 0, size, false);
        try {
          table = parseFormatTable(new Uint8Array(mapping));
        } finally {
          fd.munmap(mapping);
        }
      } catch (error) {
        warnings.push(`linux-dmabuf format table unreadable: ${(error as Error).message}`);
        table = [];
      } finally {
        fd.close(tableFd);
      }
    },
    trancheFormats: (indices) => {
      const invalid = addTrancheFormats(indices, table, pending);
      if (invalid > 0) warnings.push(`linux-dmabuf tranche had ${invalid} bad format index(es)`);
    },
    done: () => {
      into.clear();
      for (const format of pending.formats()) {
        for (const modifier of pending.modifiers(format)) into.add(format, modifier);
      }
      pending.clear();
    },
  });
}

/**
 * Binds wl_compositor (v4+, for damage_buffer), xdg_wm_base, wl_shm, zwp_linux_dmabuf_v1 (up
 * to v4), wl_subcompositor and wl_seat, then does the roundtrip that delivers their initial
 * events. Throws when there is no usable wl_compositor.
 */
export interface BindOptions {
  /** Highest zwp_linux_dmabuf_v1 version to bind (default 4; 3 exercises the event path). */
  maxDmabufVersion?: number;
}

export async function bindGlobals(
  client: WaylandClient,
  options: BindOptions = {},
): Promise<PresentGlobals> {
  const compositor = client.bind(WlCompositorProxy, 5, 4);
  if (!compositor) {
    throw new Error('the compositor offers no wl_compositor of version 4 or later');
  }
  const warnings: string[] = [];
  const wmBase = client.bind(XdgWmBaseProxy, 2);
  wmBase?.setListener({ ping: (serial) => wmBase.pong(serial) });
  const shmFormats = new Set<number>();
  const shm = client.bind(WlShmProxy, 1);
  shm?.setListener({ format: (format) => shmFormats.add(shmToDrmFormat(format)) });
  const subcompositor = client.bind(WlSubcompositorProxy, 1);
  // v8 for wl_pointer.axis_value120 (hi-res wheel); older seats still work.
  const seat = client.bind(WlSeatProxy, 8);
  let seatCapabilities = 0;
  seat?.setListener({ capabilities: (capabilities) => (seatCapabilities = capabilities) });

  const dmabuf = client.bind(ZwpLinuxDmabufV1Proxy, Math.min(4, options.maxDmabufVersion ?? 4));
  let dmabufFormats: FormatSet | null = null;
  let feedback: ZwpLinuxDmabufFeedbackV1Proxy | null = null;
  if (dmabuf) {
    const formats = new FormatSet();
    dmabufFormats = formats;
    if (dmabuf.version >= 4) {
      feedback = dmabuf.getDefaultFeedback();
      followFeedback(feedback, formats, warnings);
    } else {
      dmabuf.setListener({
        format: (format) => {
          // v3 sends modifier events for every pair; its format events are legacy duplicates.
          if (dmabuf.version < 3) formats.add(format, DRM_FORMAT_MOD_INVALID);
        },
        modifier: (format, hi, lo) => formats.add(format, joinModifier(hi, lo)),
      });
    }
  }
  await client.roundtrip();
  return {
    compositor,
    wmBase,
    shm,
    dmabuf,
    dmabufVersion: dmabuf ? dmabuf.version : null,
    subcompositor,
    seat,
    seatCapabilities,
    shmFormats,
    dmabufFormats,
    warnings,
    writeBlocked: () => client.writeBlocked,
    destroy() {
      if (feedback?.alive) feedback.destroy();
      if (dmabuf?.alive) dmabuf.destroy();
      if (wmBase?.alive) wmBase.destroy();
      if (subcompositor?.alive) subcompositor.destroy();
      if (seat?.alive) {
        if (seat.version >= 5) seat.release();
        else seat.destroyProxy();
      }
      // wl_shm has no destructor request in libwayland 1.21.
      if (shm?.alive) shm.destroyProxy();
      if (compositor.alive) compositor.destroyProxy();
    },
  };
}

export function describeShmFormats(formats: ReadonlySet<number>): string[] {
  return [...formats].map(fourccName);
}
