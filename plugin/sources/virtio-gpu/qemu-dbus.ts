/**
 * Offering the guest a new display size through QEMU's D-Bus display (`-display dbus`), the one
 * stock path measured to work with vhost-user-gpu in QEMU 10: QEMU keeps the device config's
 * events_read to itself, so a vhost-user back-end cannot raise VIRTIO_GPU_EVENT_DISPLAY; QEMU's UI
 * layer can. `org.qemu.Display1.Console.SetUIInfo` on a head's console reaches the device's
 * ui_info, QEMU raises the event, and the guest sends GET_DISPLAY_INFO (and GET_EDID) to the
 * back-end again, which then answers with the size it was asked for.
 *
 * The call goes through GLib's `gdbus` tool (Debian's libglib2.0-bin), one call per resize.
 */
import { execFile } from 'node:child_process';
import type { Logger } from '../../common/log.js';
import type { DisplayControl } from './index.js';

export interface QemuDbusDisplayOptions {
  /** D-Bus address QEMU was started with (`-display dbus,addr=ADDRESS`); default the session bus. */
  address?: string;
  /** QEMU's console index of a head (default: the head index, QEMU's numbering for one GPU). */
  consoleOf?: (headId: number) => number;
  log?: Logger;
  /** For tests: runs gdbus (default: node's execFile). */
  run?: (args: string[]) => Promise<void>;
}

/** The gdbus arguments of one SetUIInfo call (exported for tests). */
export function setUiInfoArgs(
  address: string | undefined,
  console: number,
  width: number,
  height: number,
): string[] {
  return [
    'call',
    ...(address ? ['--address', address] : ['--session']),
    '--dest',
    'org.qemu',
    '--object-path',
    `/org/qemu/Display1/Console_${console}`,
    '--method',
    'org.qemu.Display1.Console.SetUIInfo',
    // width_mm, height_mm (0: unknown), xoff, yoff, width, height
    '0',
    '0',
    '0',
    '0',
    String(width),
    String(height),
  ];
}

function runGdbus(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('gdbus', args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`gdbus ${args[0]} failed: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
}

export function qemuDbusDisplay(options: QemuDbusDisplayOptions = {}): DisplayControl {
  const run = options.run ?? runGdbus;
  const log = options.log ?? (() => undefined);
  // One call at a time, in order: the last size asked for is the one QEMU keeps.
  let queue = Promise.resolve();
  return {
    setHeadSize(headId, width, height) {
      const console = options.consoleOf?.(headId) ?? headId;
      const args = setUiInfoArgs(options.address, console, width, height);
      queue = queue
        .then(() => run(args))
        .then(
          () => log('info', `asked QEMU to offer head ${headId} ${width}x${height}`),
          (error: Error) =>
            log(
              'warn',
              `could not ask QEMU for head ${headId} ${width}x${height}: ${error.message}`,
            ),
        );
    },
  };
}
