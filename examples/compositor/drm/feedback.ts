/**
 * linux-dmabuf v4 feedback for a KMS output: main_device is the DRM device, and a scanout tranche
 * (the table entries the primary plane takes) comes before the render tranche, so clients that
 * can allocate for scanout prefer those formats.
 */
import {
  CompiledFeedback,
  encodeIndices,
  type FeedbackFdOps,
  type Tranche,
} from '../dmabuf/feedback.js';
import { Modifier, type FormatModifierSet } from '../dmabuf/formats.js';
import type { PlaneFormats } from './scanout.js';

/** zwp_linux_dmabuf_feedback_v1.tranche_flags.scanout */
export const TRANCHE_FLAG_SCANOUT = 1;

/** Indices of the table entries a plane takes (the implicit modifier counts when LINEAR does). */
export function scanoutIndices(formats: FormatModifierSet, plane: PlaneFormats): number[] {
  const indices: number[] = [];
  formats.entries().forEach(({ format, modifier }, index) => {
    if (
      plane.has(format, modifier) ||
      (modifier === Modifier.INVALID && plane.has(format, Modifier.LINEAR))
    ) {
      indices.push(index);
    }
  });
  return indices;
}

export class ScanoutFeedback extends CompiledFeedback {
  // Declared, not defined: the parent's constructor sets it, this one replaces it.
  declare readonly tranches: readonly Tranche[];

  constructor(
    formats: FormatModifierSet,
    drmDevice: bigint,
    primaryFormats: PlaneFormats,
    fdOps: FeedbackFdOps,
  ) {
    super(formats, drmDevice, fdOps);
    const render = this.tranches;
    const scanout = scanoutIndices(formats, primaryFormats);
    this.tranches =
      scanout.length === 0
        ? render
        : [
            {
              targetDevice: this.mainDevice,
              formatIndices: encodeIndices(scanout),
              flags: TRANCHE_FLAG_SCANOUT,
            },
            ...render,
          ];
  }
}
