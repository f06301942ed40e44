// A private D-Bus daemon for one QEMU's D-Bus display (`-display dbus,addr=...`): guestfb asks
// QEMU to offer the guest a new size through it (plugin/sources/virtio-gpu/qemu-dbus.ts). A bus
// of its own keeps QEMUs from competing for the name org.qemu and needs no session bus.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface PrivateBus {
  /** The D-Bus address, for `-display dbus,addr=` and qemuDbusDisplay({ address }). */
  address: string;
  close(): Promise<void>;
}

const sessionConfig = '/usr/share/dbus-1/session.conf';

/** Starts dbus-daemon listening on `dir`/bus; resolves once it accepts connections. */
export async function startPrivateBus(dir: string): Promise<PrivateBus> {
  if (!existsSync(sessionConfig)) {
    throw new Error(`dbus: ${sessionConfig} is missing (install dbus-daemon; npm run setup does)`);
  }
  const socket = path.join(dir, 'bus');
  if (socket.length > 100 || /[,;=\s]/.test(socket))
    throw new Error(`dbus: unusable socket path ${socket}`);
  const daemon = spawn(
    'dbus-daemon',
    [
      `--config-file=${sessionConfig}`,
      `--address=unix:path=${socket}`,
      '--nofork',
      '--print-address=1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  daemon.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => daemon.once('close', () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    let printed = '';
    daemon.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      printed += chunk;
      // The printed address adds a guid; QEMU's -display dbus,addr= cannot take its comma.
      if (printed.includes('\n')) resolve(`unix:path=${socket}`);
    });
    daemon.once('error', (error) =>
      reject(new Error(`dbus: cannot start dbus-daemon: ${error.message}`)),
    );
    void exited.then(() => reject(new Error(`dbus: dbus-daemon exited: ${output.trim()}`)));
  });
  return {
    address,
    async close() {
      if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
      await exited;
    },
  };
}
