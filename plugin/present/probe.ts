/**
 * Asks a compositor what it offers (for `guestfb doctor`): globals, the linux-dmabuf version
 * and formats/modifiers, and wl_shm formats. Connects, reads, disconnects.
 */
import { WaylandClient } from './connection.js';
import { FormatSet } from '../common/formats.js';
import { bindGlobals, describeShmFormats } from './globals.js';

export interface CompositorInfo {
  globals: string[];
  dmabufVersion: number | null;
  dmabufFormats: FormatSet;
  shmFormats: Set<number>;
  shmFormatNames: string[];
  warnings: string[];
}

export async function probeCompositor(display?: string): Promise<CompositorInfo> {
  const client = await WaylandClient.connect(display);
  try {
    const globals = await bindGlobals(client);
    const info: CompositorInfo = {
      globals: [...new Set(client.globals.map((g) => g.interface))].sort(),
      dmabufVersion: globals.dmabufVersion,
      dmabufFormats: globals.dmabufFormats ?? new FormatSet(),
      shmFormats: globals.shmFormats,
      shmFormatNames: describeShmFormats(globals.shmFormats),
      warnings: globals.warnings,
    };
    globals.destroy();
    await client.roundtrip().catch(() => undefined);
    return info;
  } finally {
    client.disconnect();
  }
}
