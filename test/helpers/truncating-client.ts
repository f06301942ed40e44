/**
 * A hostile Wayland client, run as its own process: it commits a wl_shm buffer from an unsealed
 * memfd again and again while it keeps truncating and regrowing that memfd, so the compositor
 * meets a pool shorter than the buffer in the middle of reading it. It prints one line when the
 * compositor ends it: `protocol-error <interface> <code>` (what a correct compositor does), or
 * `hangup <errno>`, or `survived` when nothing happened within its time.
 *
 *   node truncating-client.js SECONDS   (WAYLAND_DISPLAY names the compositor)
 */
import { fd } from '../../native/fd.js';
import { Connection } from '../../protocol-xml/runtime/client.js';
import { WlCompositorProxy, WlShmFormat, WlShmProxy } from '../../build/protocols/wayland.js';

const SIZE = 256;
const BYTES = SIZE * SIZE * 4;

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? '2');
  const connection = Connection.connect();
  const registry = await connection.registry();
  const compositor = registry.bindFirst(WlCompositorProxy, 4);
  const shm = registry.bindFirst(WlShmProxy, 1);
  const memfd = fd.memfdCreate('truncating-client', false);
  fd.ftruncate(memfd, BYTES);
  fd.pwrite(memfd, new Uint8Array(BYTES).fill(0x5a), 0);
  const pool = shm.createPool(memfd, BYTES);
  const buffer = pool.createBuffer(0, SIZE, SIZE, SIZE * 4, WlShmFormat.xrgb8888);
  const surface = compositor.createSurface();
  const deadline = Date.now() + seconds * 1000;
  let ended = '';
  connection.onError((error) => {
    const info = error.info;
    ended =
      info.interfaceName !== undefined
        ? `protocol-error ${info.interfaceName} ${info.code ?? '?'}`
        : `hangup ${info.errno}`;
  });
  let sizeNow = BYTES;
  while (!ended && Date.now() < deadline) {
    surface.attach(buffer, 0, 0);
    surface.damageBuffer(0, 0, SIZE, SIZE);
    surface.commit();
    connection.flush();
    // While the compositor copies that commit, the pool shrinks and grows under it.
    const until = process.hrtime.bigint() + 300_000n;
    while (process.hrtime.bigint() < until) {
      sizeNow = sizeNow === BYTES ? 4096 : BYTES;
      fd.ftruncate(memfd, sizeNow);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  console.log(ended || 'survived');
  fd.close(memfd);
  connection.disconnect();
}

main().catch((error: unknown) => {
  console.log(`failed ${String(error)}`);
  process.exitCode = 1;
});
