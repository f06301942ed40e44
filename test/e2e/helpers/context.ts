// What every e2e test with a QEMU guest does around its assertions: get QEMU and the guest image
// (cached), a working folder, and on failure the context that explains it (our logs, the guest's
// console, QEMU's stderr), so a red run says why without a rerun.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ensureGuest,
  ensureQemu,
  probeKvm,
  type GuestImage,
  type QemuProcess,
  type QemuTier,
} from '../../../examples/qemu/qemu.js';

export interface E2eGuest<G extends GuestImage = GuestImage> {
  tier: QemuTier;
  guest: G;
  /** A fresh folder for sockets and files; `removeWorkDir` deletes it. */
  workDir: string;
}

type Progress = (message: string) => void;

/** QEMU, the test guest image and a working folder for the e2e test `name` (progress on stderr). */
export async function prepareE2e(name: string, options?: { kvm?: boolean }): Promise<E2eGuest>;
/** The same with another guest image (e.g. the desktop guest). */
export async function prepareE2e<G extends GuestImage>(
  name: string,
  options: { image: (progress: Progress) => Promise<G>; kvm?: boolean },
): Promise<E2eGuest<G>>;
/** `kvm`: probe KVM so that boots use it where it works (accel 'auto'); default TCG. */
export async function prepareE2e(
  name: string,
  options: { image?: (progress: Progress) => Promise<GuestImage>; kvm?: boolean } = {},
): Promise<E2eGuest> {
  const progress: Progress = (message) => process.stderr.write(`${name} e2e: ${message}\n`);
  const tier = await ensureQemu(progress);
  const guest = await (options.image ?? ensureGuest)(progress);
  if (options.kvm) await probeKvm(tier, guest, progress);
  const workDir = mkdtempSync(path.join(os.tmpdir(), `guestfb-${name}-e2e-`));
  return { tier, guest, workDir };
}

export function removeWorkDir(e2e: { workDir?: string } | undefined): void {
  if (e2e?.workDir) rmSync(e2e.workDir, { recursive: true, force: true });
}

/** One part of a failure's context: a label and lines (the last 30) or text (its tail). */
export type Section = readonly [label: string, text: string | readonly string[] | undefined];

/** How much of a text section to keep, by default, and of QEMU's stderr. */
const TEXT_TAIL = 2500;
const STDERR_TAIL = 1500;

/** Sections as "--- label:" blocks; `textTail` characters of each text, 30 lines of each list. */
export function failureContext(sections: readonly Section[], textTail = TEXT_TAIL): string {
  return sections
    .map(([label, text]) => {
      const body =
        text === undefined
          ? ''
          : typeof text === 'string'
            ? text.slice(-textTail)
            : text.slice(-30).join('\n');
      return `--- ${label}:\n${body}`;
    })
    .join('\n');
}

/** The guest's console tail and QEMU's stderr. */
export function qemuContext(qemu: QemuProcess | undefined, consoleTail = TEXT_TAIL): string {
  return [
    failureContext([['guest console tail', qemu?.console()]], consoleTail),
    failureContext([['qemu stderr', qemu?.stderr()]], STDERR_TAIL),
  ].join('\n');
}

/** Our log's last lines, then the guest's console tail and QEMU's stderr. */
export function guestContext(
  label: string,
  logs: readonly string[],
  qemu: QemuProcess | undefined,
  consoleTail = TEXT_TAIL,
): string {
  return `${failureContext([[label, logs]])}\n${qemuContext(qemu, consoleTail)}`;
}

/** `error` with `context` below its message: what a catch rethrows so the failure explains itself. */
export function withContext(error: unknown, context: string): Error {
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`${message}\n${context}`, { cause: error });
}

/** What an e2e test may have started; `stopAll` ends them whatever got started. */
export interface Started {
  qemu?: QemuProcess | undefined;
  plugin?: { stop(): void } | undefined;
  compositor?: { close(): Promise<unknown> } | undefined;
  /** Back-ends and buses, closed last in this order. */
  others?: readonly ({ close(): unknown } | undefined)[];
}

/** after(): QEMU first (its sockets close), then the plugin, the compositor, the back-ends. */
export async function stopAll({ qemu, plugin, compositor, others = [] }: Started): Promise<void> {
  qemu?.kill('SIGKILL');
  await qemu?.exited.catch(() => undefined);
  plugin?.stop();
  await compositor?.close();
  for (const other of others) await other?.close();
}
