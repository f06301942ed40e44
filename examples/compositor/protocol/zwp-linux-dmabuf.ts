/**
 * zwp_linux_dmabuf_v1 at version 4. Versions 1-3 get `format` (and from 3 `modifier`) events on
 * bind; version 4 gets none and asks for feedback objects instead.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ZwpLinuxDmabufV1Resource } from '../../../build/protocols/linux_dmabuf_unstable_v1.js';
import type { Global } from '../../../protocol-xml/runtime/server.js';
import type { ServerContext } from './context.js';
import { DmabufFeedbackObject } from './zwp-linux-dmabuf-feedback.js';
import { BufferParamsObject } from './zwp-linux-buffer-params.js';

export const ZWP_LINUX_DMABUF_VERSION = 4;

/** glibc's makedev encoding of a dev_t. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return (
    ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn)
  );
}

/** The conventional first render node (char 226:128), used when the machine has no DRM node. */
export const NOMINAL_RENDER_NODE = makedev(226, 128);

/**
 * The dev_t for main_device: the first DRM render node, or, without one, the nominal
 * renderD128 number. A CPU renderer has no device of its own, but the protocol needs a
 * non-zero main_device (clients such as wayland-info treat 0 as "no feedback"); a client that
 * cannot open it falls back to what the format table says, which here is LINEAR memory.
 */
export function findMainDevice(driDirectory = '/dev/dri'): bigint {
  try {
    const nodes = readdirSync(driDirectory)
      .filter((name) => name.startsWith('renderD'))
      .sort();
    for (const node of nodes) {
      const stats = statSync(path.join(driDirectory, node), { bigint: true });
      if (stats.isCharacterDevice()) return stats.rdev;
    }
  } catch {
    // no DRM at all
  }
  return NOMINAL_RENDER_NODE;
}

export function createLinuxDmabufGlobal(context: ServerContext): Global {
  return ZwpLinuxDmabufV1Resource.global(context.display, ZWP_LINUX_DMABUF_VERSION, (resource) => {
    context.noteClient(resource.client);
    if (resource.version < 4) {
      for (const format of context.dmabufFormats.formats()) {
        resource.sendFormat(format);
        if (resource.version >= 3) {
          for (const modifier of context.dmabufFormats.modifiersOf(format)) {
            resource.sendModifier(format, Number(modifier >> 32n), Number(modifier & 0xffffffffn));
          }
        }
      }
    }
    return {
      createParams(dmabuf, id) {
        new BufferParamsObject(context, dmabuf.client, dmabuf.version, id);
      },
      getDefaultFeedback(dmabuf, id) {
        new DmabufFeedbackObject(context, dmabuf.client, dmabuf.version, id);
      },
      getSurfaceFeedback(dmabuf, id) {
        // One renderer, one device: a surface's feedback equals the default feedback.
        new DmabufFeedbackObject(context, dmabuf.client, dmabuf.version, id);
      },
    };
  });
}
