// End to end, resize: the compositor configures guestfb's window with a new size, guestfb offers
// it to the guest through stock QEMU 10 (its D-Bus display's SetUIInfo raises the virtio-gpu
// display-change event, which a vhost-user back-end cannot), the guest asks guestfb for the
// display info again and takes the new size as its preferred mode; its console (fbcon) switches
// to it: a modeset that scans out 1024x768 (of its 1280x800 framebuffer).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { XdgSurfaceObject } from '../../examples/compositor/protocol/xdg-surface.js';
import { startPrivateBus, type PrivateBus } from '../../examples/qemu/dbus.js';
import {
  bootGuest,
  type GuestImage,
  type QemuProcess,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../plugin/index.js';
import {
  createVhostUserGpuBackend,
  qemuDbusDisplay,
  type VhostUserGpuBackend,
} from '../../plugin/sources/virtio-gpu/index.js';
import { assertGuestPath } from './helpers/udmabuf.js';
import { guestContext, prepareE2e, removeWorkDir, stopAll } from './helpers/context.js';
import { waitFor, windowsByTitle } from './helpers/windows.js';

const TITLE = 'rz — rz';
const WAIT_MS = 300_000;

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;
let bus: PrivateBus | undefined;
let compositor: Compositor | undefined;
let plugin: GuestfbPlugin | undefined;
let backend: VhostUserGpuBackend | undefined;
let qemu: QemuProcess | undefined;
const logs: string[] = [];

before(async () => {
  ({ tier, guest, workDir } = await prepareE2e('resize', { kvm: true }));
});

after(async () => {
  await stopAll({ qemu, plugin, compositor, others: [backend, bus] });
  removeWorkDir({ workDir });
});

test("a window configured to a new size becomes the guest's mode (QEMU's D-Bus display)", async (t) => {
  bus = await startPrivateBus(workDir);
  compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 1280, height: 800, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const socketPath = path.join(workDir, 'gpu.sock');
  backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    width: 1280,
    height: 800,
    name: 'rz',
    displayControl: qemuDbusDisplay({
      address: bus.address,
      log: (level, message) => logs.push(`dbus ${level}: ${message}`),
    }),
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  plugin = createGuestfbPlugin({
    sources: [{ name: 'rz', source: backend }],
    log: (line) => logs.push(line),
  });
  assert.equal(await compositor.use(plugin), true);
  // The guest prints its connector's preferred mode (first in the list) every second.
  const modes = '/sys/class/drm/card0-Virtual-1/modes';
  qemu = bootGuest(tier, guest, {
    gpuSocket: socketPath,
    width: 1280,
    height: 800,
    guestCommand: `while true; do echo "MODE $(head -1 ${modes})"; sleep 1; done`,
    extraArgs: ['-display', `dbus,addr=${bus.address}`],
    timeoutMs: 15 * 60_000,
  });
  const debug = () => guestContext('log', logs, qemu);
  await qemu.waitForConsole(/MODE 1280x800/);
  assert.ok(
    await waitFor(() => windowsByTitle(compositor!).has(TITLE), WAIT_MS),
    `window mapped\n${debug()}`,
  );
  const window = windowsByTitle(compositor).get(TITLE)!;
  assert.deepEqual(window.surface.size(), { width: 1280, height: 800 });
  const displayInfoBefore = backend.stats()['cmd.GET_DISPLAY_INFO'] ?? 0;

  const started = Date.now();
  const role = window.surface.roleData;
  assert.ok(role instanceof XdgSurfaceObject && role.toplevel, 'an xdg_toplevel');
  role.toplevel.configure(1024, 768);
  await qemu.waitForConsole(/MODE 1024x768/);
  const followed = await waitFor(() => {
    const rect = backend!.scanout(0)?.rect;
    return rect?.width === 1024 && rect.height === 768;
  }, WAIT_MS);
  t.diagnostic(
    `configure to guest mode and scanout 1024x768 in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  assert.ok(followed, `the guest's console took the new mode\n${debug()}`);
  assert.deepEqual([backend.heads()[0]!.width, backend.heads()[0]!.height], [1024, 768]);
  assert.deepEqual(backend.scanout(0)?.rect, { x: 0, y: 0, width: 1024, height: 768 });
  assert.ok(
    (backend.stats()['cmd.GET_DISPLAY_INFO'] ?? 0) > displayInfoBefore,
    'the guest asked for the display info again (the event came from QEMU)',
  );
  assert.ok(
    logs.some((line) => line.includes('asked QEMU to offer head 0 1024x768')),
    `the request went through QEMU's D-Bus display\n${debug()}`,
  );
  assert.ok(logs.some((line) => /configured to 1024x768; offered to the guest/.test(line)));
  // The guest's frames went to the compositor on the one path this host allows.
  const presented = () => {
    const shown = plugin!.presenter?.windows().find((w) => w.title === TITLE);
    return !!shown?.buffer && !shown.pacer.waitingForFrame;
  };
  assert.ok(await waitFor(presented, WAIT_MS), `a guest buffer was presented\n${debug()}`);
  t.diagnostic(assertGuestPath(plugin!, backend!, TITLE));
});
