/**
 * `guestfb-vhost-user-gpu`: guestfb's GPU back-end as a vhost-user back-end program, the binary
 * the discovery descriptor names (libvirt runs it with --print-capabilities, then --fd=N).
 */
import { runBackendProgram, type BackendProgramSpec } from './conventions.js';
import { connectChannel, domainName, handOffOrServe } from './program.js';
import { linesOf } from '../common/log.js';

export const gpuProgram: BackendProgramSpec = {
  program: 'guestfb-vhost-user-gpu',
  type: 'gpu',
  description:
    "guestfb's vhost-user GPU back-end: shows the guest's display in the Wayland compositor, in the " +
    'running guestfb when there is one ($XDG_RUNTIME_DIR/guestfb/control.sock).',
  // 2D scanout from guest memory only: no virgl, so no render node either.
  features: [],
  options: {
    'render-node': {
      value: true,
      help: 'DRM render node for virgl',
      refused: 'guestfb does no 3D (virgl); it shows 2D scanouts zero-copy',
    },
    virgl: {
      value: false,
      help: 'enable virgl 3D',
      refused: 'guestfb does no 3D (virgl); it shows 2D scanouts zero-copy',
    },
  },
};

function log(message: string): void {
  process.stderr.write(`${gpuProgram.program}: ${message}\n`);
}

/** Serves the GPU in this process: a window in WAYLAND_DISPLAY's compositor, or none. */
async function serveGpuLocally(conn: number, name: string, stop: Promise<string>): Promise<number> {
  const { createVhostUserGpuBackend } = await import('../sources/virtio-gpu/index.js');
  const backend = createVhostUserGpuBackend({
    role: 'fd',
    fd: conn,
    name,
    log: linesOf(log, `${name}: `),
  });
  const disconnected = new Promise<string>((resolve) => backend.on('disconnected', resolve));
  let plugin: import('../index.js').GuestfbPlugin | null = null;
  if (process.env.WAYLAND_DISPLAY) {
    const { runStandalone } = await import('../index.js');
    try {
      plugin = await runStandalone({
        sources: [{ name, source: backend }],
        log: (message) => log(`${name}: ${message}`),
      });
    } catch (error) {
      log(
        `${name}: compositor "${process.env.WAYLAND_DISPLAY}": ${(error as Error).message}; serving without a window`,
      );
    }
  } else {
    log(`${name}: WAYLAND_DISPLAY is not set: serving the device without a window`);
  }
  const why = await Promise.race([disconnected, stop]);
  plugin?.stop();
  backend.close();
  log(`${name}: done (${why})`);
  return 0;
}

export function main(argv: readonly string[]): Promise<number> {
  return runBackendProgram(gpuProgram, argv, async (invocation) => {
    const conn = await connectChannel(invocation.channel);
    return handOffOrServe({
      type: gpuProgram.type,
      conn,
      name: domainName('vm'),
      log,
      serveLocally: serveGpuLocally,
    });
  });
}
