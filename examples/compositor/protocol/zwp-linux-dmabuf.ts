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

/**
 * The dev_t of the first DRM render node, or 0 without one (a CPU renderer has no device; the
 * protocol still needs a main_device, and clients that find no node fall back to linear).
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
  return 0n;
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
