// Command line front end for the QEMU tier: fetch QEMU 10 and the test guest, boot it with a
// virtio-gpu device, echo the guest console, optionally grab a screendump.
// Run `node dist/examples/qemu/launch.js --help`.
import { parseArgs } from 'node:util';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  bootGuest,
  ensureGuest,
  ensureQemu,
  gpuDeviceId,
  probeKvm,
  qemuArgs,
  startQemuVhostUserGpu,
  type BackendProcess,
  type BootOptions,
} from './qemu.js';
import { QmpClient, screendump } from './qmp.js';

const usage = `usage: node dist/examples/qemu/launch.js [options]

Boots the guestfb test guest (Debian 6.1 kernel, busybox, drawpattern) on QEMU 10 from
bookworm-backports (fetched into the cache on first use) under TCG.

GPU:
  --gpu KIND            builtin (QEMU's virtio-gpu-pci, default), vhost-user (a backend
                        already listening on --socket, e.g. guestfb), qemu-backend (start
                        QEMU's own vhost-user-gpu on --socket), none
  --socket PATH         vhost-user GPU socket (default: a temporary path for qemu-backend)
  --device OPTS         device driver and options instead of the default for --gpu
  --scanouts N          max_outputs (default 1)
  --width W --height H  mode the device offers (default 1280x800)
  --force-scanouts      make the guest drive scanouts 2..N (QEMU enables only head 0)
  --no-fbcon            drm_kms_helper.fbdev_emulation=0 (no console on the display)
Guest:
  --command CMD         shell command for the guest (default: the demo,
                        'drawpattern --output last --frames 0'); see examples/guest
  --ivshmem PATH        ivshmem-doorbell server socket to connect to
  --memory MB           guest RAM (default 512)
  --accel KIND          auto (KVM if a probe boot works, else TCG), tcg or kvm
  --timeout SECONDS     kill QEMU after this long (default: none)
Output:
  --qmp PATH            QMP socket for other tools
  --screendump FILE     once the console matches --screendump-after, save head --head as PPM
  --screendump-after RE (default 'drawpattern: frame 0 shown'), then keep running
  --head N              head for --screendump (default 0)
  --quiet               do not echo the guest console
  --print               print the QEMU command line and exit
  --fetch-only          only fetch/build QEMU and the guest; print their paths as JSON
  --help

Exit status: the guest command's status (printed by /init), else 1.`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      gpu: { type: 'string', default: 'builtin' },
      socket: { type: 'string' },
      device: { type: 'string' },
      scanouts: { type: 'string', default: '1' },
      width: { type: 'string', default: '1280' },
      height: { type: 'string', default: '800' },
      'force-scanouts': { type: 'boolean', default: false },
      'no-fbcon': { type: 'boolean', default: false },
      command: { type: 'string' },
      ivshmem: { type: 'string' },
      memory: { type: 'string', default: '512' },
      accel: { type: 'string', default: 'auto' },
      timeout: { type: 'string' },
      qmp: { type: 'string' },
      screendump: { type: 'string' },
      'screendump-after': { type: 'string', default: 'drawpattern: frame 0 shown' },
      head: { type: 'string', default: '0' },
      quiet: { type: 'boolean', default: false },
      print: { type: 'boolean', default: false },
      'fetch-only': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const integer = (name: string, text: string, min: number, max: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`--${name} must be an integer in ${min}..${max}`);
    }
    return value;
  };
  if (!['builtin', 'vhost-user', 'qemu-backend', 'none'].includes(values.gpu!)) {
    throw new Error(`--gpu must be builtin, vhost-user, qemu-backend or none`);
  }
  if (!['auto', 'tcg', 'kvm'].includes(values.accel!)) throw new Error('--accel: auto|tcg|kvm');
  if (values.gpu === 'vhost-user' && !values.socket)
    throw new Error('--gpu vhost-user needs --socket');

  const progress = (msg: string) => process.stderr.write(`launch: ${msg}\n`);
  const started = Date.now();
  const tier = await ensureQemu(progress);
  const guest = await ensureGuest(progress);
  progress(`QEMU and guest ready in ${Date.now() - started} ms`);
  if (values.accel === 'auto') await probeKvm(tier, guest, progress);
  if (values['fetch-only']) {
    console.log(JSON.stringify({ qemu: tier, guest }, null, 2));
    return 0;
  }

  const scratch = path.join(os.tmpdir(), `guestfb-launch-${process.pid}`);
  const socket =
    values.gpu === 'qemu-backend' || values.gpu === 'vhost-user'
      ? (values.socket ?? `${scratch}-gpu.sock`)
      : undefined;
  const qmpSocket = values.qmp ?? (values.screendump ? `${scratch}-qmp.sock` : undefined);
  const options: BootOptions = {
    gpuSocket: socket,
    gpuDevice: values.device ?? (values.gpu === 'none' ? 'none' : undefined),
    scanouts: integer('scanouts', values.scanouts!, 1, 16),
    width: integer('width', values.width!, 16, 16384),
    height: integer('height', values.height!, 16, 16384),
    forceScanouts: values['force-scanouts'],
    fbcon: !values['no-fbcon'],
    guestCommand: values.command,
    ivshmemSocket: values.ivshmem,
    memoryMb: integer('memory', values.memory!, 64, 65536),
    accel: values.accel as BootOptions['accel'],
    qmpSocket,
    timeoutMs: values.timeout ? integer('timeout', values.timeout, 1, 86400) * 1000 : undefined,
    onConsole: values.quiet ? undefined : (line) => process.stdout.write(`${line}\n`),
  };
  if (values.print) {
    console.log([tier.qemuBinary, ...qemuArgs(tier, guest, options)].join(' '));
    return 0;
  }

  let backend: BackendProcess | undefined;
  if (values.gpu === 'qemu-backend') {
    backend = startQemuVhostUserGpu(tier, socket!);
    await backend.ready;
    progress(`QEMU's vhost-user-gpu (pid ${backend.pid}) listens on ${socket}`);
  }
  const bootStart = Date.now();
  const qemu = bootGuest(tier, guest, options);
  progress(`QEMU pid ${qemu.pid}: ${qemu.argv.join(' ')}`);
  const stop = () => qemu.kill('SIGTERM');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  void qemu
    .waitForConsole(/guestfb-init: up/)
    .then(() => progress(`guest /init ran ${Date.now() - bootStart} ms after QEMU started`))
    .catch(() => {});
  void qemu
    .waitForConsole(/guestfb-init: \/dev\/dri\/card0 ready/)
    .then(() => progress(`guest DRM device ready ${Date.now() - bootStart} ms after QEMU started`))
    .catch(() => {});
  if (values.screendump) {
    const file = path.resolve(values.screendump);
    const head = integer('head', values.head!, 0, 15);
    void (async () => {
      await qemu.waitForConsole(new RegExp(values['screendump-after']!));
      const qmp = await QmpClient.connect(qmpSocket!);
      try {
        const image = await screendump(qmp, file, { device: gpuDeviceId, head });
        progress(`screendump of head ${head}: ${image.width}x${image.height} in ${file}`);
      } finally {
        qmp.close();
      }
    })().catch((error: Error) => progress(`screendump failed: ${error.message}`));
  }
  const result = await qemu.exited;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (backend) {
    backend.kill();
    await backend.exited;
    await rm(socket!, { force: true });
  }
  if (qmpSocket && !values.qmp) await rm(qmpSocket, { force: true });
  const status = qemu.guestStatus();
  progress(
    `QEMU exited (${result.signal ?? `code ${result.code}`}) after ${Date.now() - bootStart} ms; guest status ${status ?? 'unknown'}`,
  );
  if (status === null && qemu.stderr()) process.stderr.write(qemu.stderr());
  return status ?? 1;
}

main().then(
  (status) => process.exit(status),
  (error: Error) => {
    process.stderr.write(`launch: ${error.message}\n`);
    process.exit(2);
  },
);
