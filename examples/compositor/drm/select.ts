/**
 * Choosing what to drive on a KMS device: connector, mode, CRTC and planes. Pure functions over
 * the device's objects (unit-tested with hand-made objects).
 */
import type { DrmConnector, DrmCrtc, DrmPlane, ModeInfo } from '../../../native/drm.js';
import { ModeType } from '../../../native/drm.js';

export interface ModeRequest {
  width: number;
  height: number;
  /** Hz; omitted: the highest refresh at that size. */
  refresh?: number;
}

export interface KmsSelection {
  connector: DrmConnector;
  mode: ModeInfo;
  crtc: DrmCrtc;
  primary: DrmPlane;
  cursor: DrmPlane | null;
  overlays: DrmPlane[];
}

/**
 * The connector: by name ("Virtual-1") or type name ("Writeback"), or else the first connected
 * display connector (writeback connectors only when asked for: they capture, they show nothing).
 */
export function pickConnector(connectors: readonly DrmConnector[], wanted?: string): DrmConnector {
  if (wanted !== undefined) {
    const found =
      connectors.find((c) => c.name === wanted) ?? connectors.find((c) => c.typeName === wanted);
    if (!found) {
      throw new Error(
        `no connector "${wanted}" (have ${connectors.map((c) => `${c.name} ${c.status}`).join(', ')})`,
      );
    }
    if (found.modes.length === 0) throw new Error(`connector ${found.name} has no modes`);
    return found;
  }
  const found = connectors.find(
    (c) => !c.writeback && c.status === 'connected' && c.modes.length > 0,
  );
  if (!found) {
    throw new Error(
      `no connected connector with modes (have ${connectors.map((c) => `${c.name} ${c.status}`).join(', ') || 'none'})`,
    );
  }
  return found;
}

/** Refresh in mHz from the timings (vrefresh is rounded to whole Hz). */
export function modeRefreshMhz(mode: ModeInfo): number {
  if (mode.htotal > 0 && mode.vtotal > 0 && mode.clock > 0) {
    const vscan = mode.vscan > 1 ? mode.vscan : 1;
    return Math.round((mode.clock * 1_000_000) / (mode.htotal * mode.vtotal * vscan));
  }
  return mode.vrefresh * 1000;
}

export function pickMode(connector: DrmConnector, request?: ModeRequest): ModeInfo {
  const modes = connector.modes;
  if (request) {
    const sized = modes.filter(
      (m) => m.hdisplay === request.width && m.vdisplay === request.height,
    );
    const matching =
      request.refresh === undefined
        ? sized
        : sized.filter((m) => Math.abs(modeRefreshMhz(m) - request.refresh! * 1000) < 500);
    if (matching.length === 0) {
      throw new Error(
        `connector ${connector.name} has no mode ${request.width}x${request.height}` +
          (request.refresh === undefined ? '' : `@${request.refresh}`),
      );
    }
    return matching.reduce((best, m) => (modeRefreshMhz(m) > modeRefreshMhz(best) ? m : best));
  }
  return modes.find((m) => (m.type & ModeType.PREFERRED) !== 0) ?? modes[0]!;
}

/**
 * A CRTC the connector can use: the one driving it now (CRTC_ID), else the first possible one
 * no other connector uses, else the first possible one.
 */
export function pickCrtc(
  connector: DrmConnector,
  crtcs: readonly DrmCrtc[],
  connectors: readonly DrmConnector[],
): DrmCrtc {
  const possible = crtcs.filter((crtc) => connector.possibleCrtcs.includes(crtc.id));
  if (possible.length === 0) throw new Error(`no CRTC can drive ${connector.name}`);
  const current = Number(connector.properties.get('CRTC_ID')?.value ?? 0n);
  const driving = possible.find((crtc) => crtc.id === current);
  if (driving) return driving;
  const used = new Set(
    connectors
      .filter((c) => c.id !== connector.id)
      .map((c) => Number(c.properties.get('CRTC_ID')?.value ?? 0n)),
  );
  return possible.find((crtc) => !used.has(crtc.id)) ?? possible[0]!;
}

export function pickPlanes(
  crtc: DrmCrtc,
  planes: readonly DrmPlane[],
): Pick<KmsSelection, 'primary' | 'cursor' | 'overlays'> {
  const usable = planes.filter((plane) => plane.possibleCrtcs.includes(crtc.id));
  // Prefer the planes already on this CRTC (a driver may tie a primary plane to one CRTC).
  const onCrtc = (plane: DrmPlane) =>
    Number(plane.properties.get('CRTC_ID')?.value ?? 0n) === crtc.id;
  const byType = (type: DrmPlane['type']) =>
    usable
      .filter((plane) => plane.type === type)
      .sort((a, b) => Number(onCrtc(b)) - Number(onCrtc(a)));
  const primary = byType('primary')[0];
  if (!primary) throw new Error(`no primary plane for CRTC ${crtc.id}`);
  return { primary, cursor: byType('cursor')[0] ?? null, overlays: byType('overlay') };
}

export function selectKms(
  connectors: readonly DrmConnector[],
  crtcs: readonly DrmCrtc[],
  planes: readonly DrmPlane[],
  options: { connector?: string; mode?: ModeRequest } = {},
): KmsSelection {
  const connector = pickConnector(connectors, options.connector);
  const mode = pickMode(connector, options.mode);
  const crtc = pickCrtc(connector, crtcs, connectors);
  return { connector, mode, crtc, ...pickPlanes(crtc, planes) };
}
