/**
 * Registration of generated interface tables with the native addon.
 *
 * Each generated protocol module hands its specs to `registerInterfaces` when it loads; they are
 * passed to `native.defineInterfaces` in one batch the first time anything needs them (creating a
 * global or resource, sending a request, connecting). Deferring keeps module load order and
 * import cycles between protocol modules irrelevant: by the time the first object is made, every
 * imported protocol module has registered, so cross-protocol references all resolve.
 */
import { native, type InterfaceSpec } from '../../native/index.js';

const pending: InterfaceSpec[] = [];
const registered = new Set<string>();

/** Queues specs for definition. A name registered twice is a bug in the generated set. */
export function registerInterfaces(specs: readonly InterfaceSpec[]): void {
  for (const spec of specs) {
    if (registered.has(spec.name)) throw new Error(`interface ${spec.name} registered twice`);
    registered.add(spec.name);
    pending.push(spec);
  }
}

/** Defines every queued spec with the addon (interfaces the addon already knows are skipped). */
export function ensureInterfacesDefined(): void {
  if (pending.length === 0) return;
  const batch = pending.filter((spec) => !native.hasInterface(spec.name));
  // A call that throws defines nothing (addon contract): keep the queue to report it again.
  if (batch.length > 0) native.defineInterfaces(batch);
  pending.length = 0;
}

/** The names registered so far (for diagnostics and tests). */
export function registeredInterfaceNames(): string[] {
  return [...registered];
}
