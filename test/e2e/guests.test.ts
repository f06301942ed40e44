// End to end, the whole product: unmodified QEMU 10 processes boot the test guest with
// vhost-user-gpu-pci bound to guestfb's backend; guestfb runs as a plugin inside the example
// compositor in this process, and everything is checked in the compositor's screenshots.
//
// One compositor, one plugin, two backends (guests "A" and "B") for the whole file, so the
// boots run in parallel and each scenario builds on the previous one:
//   1. A (two scanouts: fbcon text on head 0, the test pattern on head 1) and B (one scanout,
//      the pattern) boot together: three windows, exact patterns, console text, geometry logged.
//   2. QEMU A is killed (SIGKILL) while drawing 20 full frames a second: A's windows leave the
//      scene, its fds are released, B's frame counter keeps advancing, the compositor keeps ticking.
//   3. A new QEMU connects to A's socket: its pattern appears; killing it returns to the same fd
//      count as after (2); killing B returns to the count before any QEMU connected; closing
//      everything returns to the count before the backends existed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import {
  bootGuest,
  type BootOptions,
  type GuestImage,
  type QemuProcess,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { comparePattern, decodeCounter, type PatternSpec } from '../../examples/guest/pattern.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../plugin/index.js';
import {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
} from '../../plugin/sources/virtio-gpu/index.js';
import { fourccName } from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import {
  arrange,
  countDiffering,
  screenshot,
  waitFor,
  windowImage,
  windowsByTitle,
} from './helpers/windows.js';
import { udmabufOnHost } from './helpers/udmabuf.js';
import { failureContext, prepareE2e, removeWorkDir } from './helpers/context.js';

const W = 800;
const H = 600;
const OUTPUT = 'HEADLESS-1';
const GAP = 16;
/** Boots under TCG take 6-8 s idle and minutes on a loaded machine: waits are generous. */
const WAIT_MS = 300_000;

/** Window titles: "<guest> — <head>"; the backend names heads NAME (one) or NAME-i (several). */
const TITLE_A0 = 'A — A-0';
const TITLE_A1 = 'A — A-1';
const TITLE_B = 'B — B';
const slots = new Map([
  [TITLE_A0, { x: 0, y: 0 }],
  [TITLE_A1, { x: W + GAP, y: 0 }],
  [TITLE_B, { x: 0, y: H + GAP }],
]);

interface Guest {
  name: string;
  socket: string;
  backend: VhostUserGpuBackend;
  logs: string[];
  /** Resources, formats and scanout geometry as the backend reported them. */
  events: string[];
}

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;
let fdsBeforeBackends: number;
let fdsBeforeQemu: number;
let compositor: Compositor;
let plugin: GuestfbPlugin;
let pluginLogs: string[];
let guestA: Guest;
let guestB: Guest;
let closed = false;
const qemus: QemuProcess[] = [];

function makeGuest(name: string, scanouts: number): Guest {
  const socket = path.join(workDir, `${name}.sock`);
  const logs: string[] = [];
  const events: string[] = [];
  const backend = createVhostUserGpuBackend({
    socketPath: socket,
    role: 'listen',
    scanouts,
    width: W,
    height: H,
    name,
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  backend.on('resourceCreated', (r) =>
    events.push(`resource ${r.id}: ${r.kind} ${fourccName(r.fourcc)} ${r.width}x${r.height}`),
  );
  backend.on('scanoutSet', (head, s) =>
    events.push(
      s
        ? `head ${head}: resource ${s.resourceId} ${fourccName(s.fourcc)} ${s.width}x${s.height} ` +
            `stride ${s.stride} offset ${s.offset} rect ${s.rect.x},${s.rect.y} ${s.rect.width}x${s.rect.height}`
        : `head ${head}: disabled`,
    ),
  );
  backend.on('disconnected', (reason) => events.push(`disconnected: ${reason}`));
  return { name, socket, backend, logs, events };
}

function boot(g: Guest, options: BootOptions): QemuProcess {
  const qemu = bootGuest(tier, guest, {
    gpuSocket: g.socket,
    width: W,
    height: H,
    timeoutMs: 15 * 60_000,
    ...options,
  });
  qemus.push(qemu);
  return qemu;
}

/** Debug context for a failed assertion. */
function guestContext(g: Guest, qemu?: QemuProcess): string {
  return failureContext([
    [`${g.name} backend log`, g.logs],
    [`${g.name} events`, g.events],
    ['plugin log', pluginLogs],
    ...(qemu
      ? ([
          [`${g.name} console`, qemu.console()],
          [`${g.name} qemu stderr`, qemu.stderr()],
        ] as const)
      : []),
  ]);
}

/** Screenshot with the guest windows in their slots. */
function shot() {
  arrange(compositor, slots);
  return screenshot(compositor, OUTPUT);
}

/** The window's part of a fresh screenshot, or null while it is not mapped. */
function capture(title: string) {
  const window = windowsByTitle(compositor).get(title);
  if (!window) return null;
  return windowImage(shot(), window);
}

/** Waits until the window shows the pattern (counter strip not compared), then asserts it. */
async function assertPatternShown(title: string, spec: PatternSpec, debug: () => string) {
  let last: ReturnType<typeof comparePattern> | null = null;
  await waitFor(() => {
    const image = capture(title);
    last = image ? comparePattern(image, spec) : null;
    return last?.mismatches === 0;
  }, WAIT_MS);
  assert.ok(last, `window "${title}" never mapped\n${debug()}`);
  assert.equal(
    (last as ReturnType<typeof comparePattern>).mismatches,
    0,
    `"${title}" differs from the pattern; first ${JSON.stringify((last as ReturnType<typeof comparePattern>).first)}\n${debug()}`,
  );
}

async function waitForFdCount(expected: number): Promise<number> {
  let count = fd.openFdCount();
  await waitFor(() => (count = fd.openFdCount()) === expected, 30_000);
  return count;
}

function killAndWait(qemu: QemuProcess) {
  qemu.kill('SIGKILL');
  return qemu.exited;
}

before(async () => {
  // accel 'auto': KVM where it works, TCG otherwise
  ({ tier, guest, workDir } = await prepareE2e('guests', { kvm: true }));
  fdsBeforeBackends = fd.openFdCount();
  pluginLogs = [];
  compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: 2 * W + GAP, height: 2 * H + GAP, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  guestA = makeGuest('A', 2);
  guestB = makeGuest('B', 1);
  plugin = createGuestfbPlugin({
    sources: [
      // Head A-1 is disabled in QEMU's display info: the backend enables it when the guest
      // scans out on it.
      { name: 'A', source: guestA.backend },
      { name: 'B', source: guestB.backend },
    ],
    log: (line) => pluginLogs.push(line),
  });
  assert.equal(await compositor.use(plugin), true, `plugin started: ${pluginLogs.join('; ')}`);
  await plugin.settle();
  fdsBeforeQemu = fd.openFdCount();
});

async function closeAll() {
  if (closed) return;
  closed = true;
  plugin?.stop();
  await compositor?.close();
  guestA?.backend.close();
  guestB?.backend.close();
}

after(async () => {
  for (const qemu of qemus) await killAndWait(qemu);
  await closeAll();
  removeWorkDir({ workDir });
});

describe('guests on QEMU 10 shown by guestfb in the example compositor', () => {
  let qemuA: QemuProcess;
  let qemuB: QemuProcess;
  let fdsWithBOnly = -1;

  test('two guests at once: two heads of A (console text, pattern) and B, pixel-exact', async (t) => {
    const started = Date.now();
    // A: fbcon on both heads, then drawpattern takes head 1 (full damage, 20 Hz) and head 0
    // keeps the boot console. QEMU enables only head 0; the guest is told to drive head 1 too.
    qemuA = boot(guestA, {
      scanouts: 2,
      forceScanouts: true,
      guestCommand: `drawpattern --output last --mode ${W}x${H} --fps 20 --frames 0`,
    });
    // B: one head, no console, the pattern with counter-strip damage at 10 Hz.
    qemuB = boot(guestB, {
      fbcon: false,
      guestCommand: `drawpattern --mode ${W}x${H} --fps 10 --damage box --frames 0`,
    });
    await Promise.all([
      qemuA.waitForConsole(/drawpattern: frame 0 shown/),
      qemuB.waitForConsole(/drawpattern: frame 0 shown/),
    ]);
    t.diagnostic(`both guests drawing after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const debugA = () => guestContext(guestA, qemuA);
    const debugB = () => guestContext(guestB, qemuB);

    await assertPatternShown(TITLE_A1, { width: W, height: H, outputIndex: 1 }, debugA);
    await assertPatternShown(TITLE_B, { width: W, height: H, outputIndex: 0 }, debugB);
    const output = /drawpattern: output (\d+) connector \d+ crtc \d+ mode (\d+)x(\d+)/.exec(
      qemuA.console(),
    );
    assert.deepEqual(output?.slice(1).map(Number), [1, W, H], 'A drew on its second output');

    const titles = [...windowsByTitle(compositor).keys()].sort();
    assert.deepEqual(titles, [TITLE_A0, TITLE_A1, TITLE_B], 'one window per head');

    // Head 0 of A keeps the kernel console: text on black, neither blank nor the pattern. The
    // guest kernel boots `quiet`, so the console holds only /init's few lines (about 1,100 lit
    // pixels at 800x600); 600 still tells text from a blank head.
    let lit = 0;
    await waitFor(() => {
      const image = capture(TITLE_A0);
      lit = image ? countDiffering(image, 0x000000) : 0;
      return lit > 600;
    }, WAIT_MS);
    assert.ok(lit > 600 && lit < (W * H) / 2, `console head: ${lit} lit pixels\n${debugA()}`);
    assert.ok(
      comparePattern(capture(TITLE_A0)!, { width: W, height: H, outputIndex: 0 }).mismatches > 0,
    );

    // The counter strips decode (white/black cells only): the guests' frames, shown exactly.
    assert.notEqual(decodeCounter(capture(TITLE_B)!), null, 'B counter strip');

    for (const g of [guestA, guestB]) t.diagnostic(`${g.name}: ${g.events.join('; ')}`);
    const stats = plugin.stats();
    t.diagnostic(
      `plugin: ${stats.framesPresented} frames, ${stats.bytesCopied} bytes copied, ` +
        `fallback: ${stats.fallbackReason ?? 'none'}`,
    );
    // The path the host allows: every window a dma-buf where udmabuf works; else the copy
    // fallback (the guests' backing is scattered, so wl_shm cannot map it directly), with
    // udmabuf named as its reason.
    const expectedPath = udmabufOnHost().usable ? 'dmabuf' : 'shm-copy';
    for (const window of plugin.presenter!.windows()) {
      assert.equal(window.buffer?.path, expectedPath, window.title);
    }
    if (udmabufOnHost().usable) assert.equal(stats.fallbackReason, null);
    else assert.match(stats.fallbackReason ?? '', /udmabuf/, udmabufOnHost().reason);
    assert.equal(stats.dmabufsLive > 0, udmabufOnHost().usable, 'live dma-bufs');
    t.diagnostic(`scenario 1 took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  test('SIGKILL of QEMU A mid-frame: its windows go, fds are released, B keeps updating', async (t) => {
    const started = Date.now();
    const ticksBefore = compositor.stats().ticks[OUTPUT]!;
    const gone = new Promise<string>((resolve) => guestA.backend.on('disconnected', resolve));
    await killAndWait(qemuA);
    t.diagnostic(`A's backend: ${await gone}`);
    const noA = await waitFor(
      () => ![...windowsByTitle(compositor).keys()].some((title) => title.startsWith('A ')),
      WAIT_MS,
    );
    assert.ok(
      noA,
      `A's windows still mapped: ${[...windowsByTitle(compositor).keys()].join(', ')}`,
    );
    assert.equal(guestA.backend.connected, false);

    // B's frame counter keeps advancing in its window.
    const counters: number[] = [];
    for (let i = 0; i < 3; i++) {
      const previous = counters.at(-1) ?? -1;
      let value: number | null = null;
      await waitFor(() => {
        const image = capture(TITLE_B);
        value = image ? decodeCounter(image) : null;
        return value !== null && value > previous;
      }, WAIT_MS);
      assert.ok(value !== null && value > previous, `B counter ${value} after ${previous}`);
      counters.push(value);
    }
    t.diagnostic(`B's counter across screenshots: ${counters.join(' → ')}`);
    // What is left now is what B alone needs; test 3 checks the count comes back to it after the
    // next A guest is gone too.
    fdsWithBOnly = fd.openFdCount();
    t.diagnostic(
      `fds: ${fdsBeforeBackends} before the backends, ${fdsBeforeQemu} before QEMU, ${fdsWithBOnly} with B only`,
    );
    assert.ok(compositor.scene.isRunning, 'the compositor keeps running');
    assert.ok(compositor.stats().ticks[OUTPUT]! > ticksBefore, 'the compositor keeps ticking');
    t.diagnostic(`scenario 2 took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  test('the backend accepts the next QEMU on the same socket; fds return to baseline', async (t) => {
    const started = Date.now();
    const qemuA2 = boot(guestA, {
      fbcon: false,
      guestCommand: `drawpattern --mode ${W}x${H} --fps 10 --damage box --frames 0`,
    });
    const debug = () => guestContext(guestA, qemuA2);
    await qemuA2.waitForConsole(/drawpattern: frame 0 shown/);
    // One scanout used this time: head 0 of A shows the pattern.
    await assertPatternShown(TITLE_A0, { width: W, height: H, outputIndex: 0 }, debug);
    t.diagnostic(
      `second QEMU on A's socket shown after ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );

    await killAndWait(qemuA2);
    await waitFor(() => !windowsByTitle(compositor).has(TITLE_A0), WAIT_MS);
    assert.equal(
      await waitForFdCount(fdsWithBOnly),
      fdsWithBOnly,
      'same fds as after the first kill',
    );

    await killAndWait(qemuB);
    await waitFor(() => windowsByTitle(compositor).size === 0, WAIT_MS);
    assert.equal(windowsByTitle(compositor).size, 0, 'no guest window left');
    assert.equal(await waitForFdCount(fdsBeforeQemu), fdsBeforeQemu, 'fds as before any QEMU');
    assert.ok(compositor.scene.isRunning, 'the compositor keeps running');

    await closeAll();
    assert.equal(fd.openFdCount(), fdsBeforeBackends, 'fds as before the backends existed');
    t.diagnostic(`scenario 3 took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
