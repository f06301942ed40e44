// End to end with a desktop nobody here wrote: QEMU 10 boots the desktop guest
// (examples/qemu/desktop-image.ts: Debian's weston on the guest's virtio-gpu, DRM back-end, pixman
// renderer, desktop shell, a weston-terminal; udev and libinput running) with guestfb as its
// vhost-user GPU, loaded in the example compositor in this process. The test looks at the
// compositor's screenshots: weston's panel and background in the colours the session configures
// (examples/guest/desktop-session.sh), and the terminal's window with its prompt. Then input
// through guestfb's vhost-user-input back-end (the guest's libinput reads it): a command typed
// into weston-terminal writes a marker to the guest's serial port, and a click on the panel's
// terminal launcher opens a second terminal, seen in a screenshot and typed into.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createCompositor, type Compositor } from '../../examples/compositor/index.js';
import { bootGuest, type QemuProcess, type QemuTier } from '../../examples/qemu/qemu.js';
import {
  desktopBootArgs,
  ensureDesktopGuest,
  type DesktopGuest,
} from '../../examples/qemu/desktop-image.js';
import { createGuestfbPlugin, type GuestfbPlugin } from '../../plugin/index.js';
import {
  createVhostUserInputBackend,
  type VhostUserInputBackend,
} from '../../plugin/virtio-input/index.js';
import { BTN_LEFT, KEY_CODES, keyForChar } from '../../plugin/virtio-input/evdev.js';
import {
  createVhostUserGpuBackend,
  type VhostUserGpuBackend,
} from '../../plugin/sources/virtio-gpu/index.js';
import { assertGuestPath } from './helpers/udmabuf.js';
import { guestContext, prepareE2e, removeWorkDir, stopAll } from './helpers/context.js';
import { screenshot, waitFor, windowsByTitle, type Screenshot } from './helpers/windows.js';

const W = 1024;
const H = 768;
const OUTPUT = 'HEADLESS-1';
const TITLE = 'desk — desk';
/** The desktop's colours, set in examples/guest/desktop-session.sh's weston.ini. */
const BACKGROUND = 0x204a87;
const PANEL = 0x2e3436;
/** weston's desktop shell draws a 32-pixel panel. */
const PANEL_HEIGHT = 32;
/** weston-terminal's default text colour (the prompt's glyphs and the cursor block). */
const TERMINAL_TEXT = 0xa8a8a8;
/** TCG boots take about 40 s to weston on an idle machine, minutes on a loaded one. */
const WAIT_MS = 480_000;

let tier: QemuTier;
let desktop: DesktopGuest;
let workDir: string;
let compositor: Compositor | undefined;
let plugin: GuestfbPlugin | undefined;
let backend: VhostUserGpuBackend | undefined;
let input: VhostUserInputBackend | undefined;
let qemu: QemuProcess | undefined;
const logs: string[] = [];

before(async () => {
  ({
    tier,
    guest: desktop,
    workDir,
  } = await prepareE2e('desktop', { image: ensureDesktopGuest, kvm: true }));
});

after(async () => {
  await stopAll({ qemu, plugin, compositor, others: [backend, input] });
  removeWorkDir({ workDir });
});

/** Pixels of row `y` equal to `rgb`. */
function rowCount(shot: Screenshot, y: number, rgb: number): number {
  let count = 0;
  for (let x = 0; x < shot.width; x++) if ((shot.pixel(x, y) & 0xffffff) === rgb) count++;
  return count;
}

/** The bounding box of pixels equal to `rgb` below row `fromY`, and how many there are. */
function boxOf(shot: Screenshot, rgb: number, fromY: number) {
  let left = shot.width;
  let top = shot.height;
  let right = -1;
  let bottom = -1;
  let count = 0;
  for (let y = fromY; y < shot.height; y++) {
    for (let x = 0; x < shot.width; x++) {
      if ((shot.pixel(x, y) & 0xffffff) !== rgb) continue;
      count++;
      left = Math.min(left, x);
      right = Math.max(right, x);
      top = Math.min(top, y);
      bottom = Math.max(bottom, y);
    }
  }
  return { left, top, width: right - left + 1, height: bottom - top + 1, count };
}

/** What the screenshot shows of weston's desktop; `terminal` is its black text area. */
function describeDesktop(shot: Screenshot) {
  const panelRows = [1, PANEL_HEIGHT / 2, PANEL_HEIGHT - 2].map((y) => rowCount(shot, y, PANEL));
  const backgroundRow = rowCount(shot, shot.height - 2, BACKGROUND);
  const terminal = boxOf(shot, 0x000000, PANEL_HEIGHT);
  // The prompt: text-coloured pixels near the top of the terminal (the black box starts at its
  // title's black glyphs; the first text line follows the title bar).
  let promptPixels = 0;
  for (let y = terminal.top; y < terminal.top + 64 && y < shot.height; y++) {
    for (let x = terminal.left; x < terminal.left + terminal.width; x++) {
      if ((shot.pixel(x, y) & 0xffffff) === TERMINAL_TEXT) promptPixels++;
    }
  }
  return { panelRows, backgroundRow, terminal, promptPixels };
}

function debug(): string {
  return guestContext('backend/plugin log', logs, qemu, 4000);
}

let fdsAtStart = -1;

test("weston's desktop boots on guestfb: panel, background and a terminal with its prompt", async (t) => {
  fdsAtStart = fd.openFdCount();
  compositor = createCompositor({
    outputs: [{ name: OUTPUT, width: W, height: H, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const socketPath = path.join(workDir, 'gpu.sock');
  backend = createVhostUserGpuBackend({
    socketPath,
    role: 'listen',
    width: W,
    height: H,
    name: 'desk',
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  input = createVhostUserInputBackend({
    socketPath: path.join(workDir, 'input.sock'),
    role: 'listen',
    log: (level, message) => logs.push(`input ${level}: ${message}`),
  });
  plugin = createGuestfbPlugin({
    sources: [{ name: 'desk', source: backend }],
    inputs: [{ name: 'desk', sink: input }],
    log: (line) => logs.push(line),
  });
  assert.equal(await compositor.use(plugin), true, `plugin started: ${logs.join('; ')}`);

  const started = Date.now();
  let firstFlushMs = -1;
  const onFlush = () => {
    firstFlushMs = Date.now() - started;
    backend?.off('flush', onFlush);
  };
  backend.on('flush', onFlush);
  qemu = bootGuest(tier, desktop, {
    ...desktopBootArgs(desktop),
    gpuSocket: socketPath,
    width: W,
    height: H,
    memoryMb: 1024,
    fbcon: false,
    timeoutMs: 15 * 60_000,
    extraArgs: [
      ...desktopBootArgs(desktop).extraArgs,
      '-chardev',
      `socket,id=inp,path=${path.join(workDir, 'input.sock')}`,
      '-device',
      'vhost-user-input-pci,chardev=inp',
    ],
  });
  await qemu.waitForConsole(/guestfb-desktop: weston is up/);
  const westonUpMs = Date.now() - started;

  let seen = describeDesktop(screenshot(compositor, OUTPUT));
  const shown = await waitFor(() => {
    if (!windowsByTitle(compositor!).has(TITLE)) return false;
    seen = describeDesktop(screenshot(compositor!, OUTPUT));
    return seen.terminal.count > 100_000 && seen.promptPixels > 50;
  }, WAIT_MS);
  const terminalMs = Date.now() - started;
  t.diagnostic(
    `TCG boot: first frame ${(firstFlushMs / 1000).toFixed(1)} s, weston up ` +
      `${(westonUpMs / 1000).toFixed(1)} s, terminal with prompt ${(terminalMs / 1000).toFixed(1)} s after QEMU started`,
  );
  t.diagnostic(`desktop as seen: ${JSON.stringify(seen)}`);
  if (!shown) {
    const file = path.join(os.tmpdir(), 'guestfb-desktop-e2e-failure.png');
    writeFileSync(file, compositor.screenshot(OUTPUT));
    assert.fail(
      `the terminal never showed its prompt (screenshot: ${file}): ${JSON.stringify(seen)}\n${debug()}`,
    );
  }

  // The guest's window fills the output at 0,0: the guest's pixels are the screenshot's.
  const window = windowsByTitle(compositor).get(TITLE)!;
  assert.deepEqual([window.x, window.y, window.surface.size()], [0, 0, { width: W, height: H }]);
  // Weston's panel across the top (its launcher icon and clock take a few pixels of each row).
  for (const count of seen.panelRows) assert.ok(count > W * 0.7, `panel row: ${count} of ${W}`);
  assert.equal(rowCount(screenshot(compositor, OUTPUT), PANEL_HEIGHT + 1, PANEL), 0);
  // The desktop's background along the bottom, where no window is.
  assert.ok(seen.backgroundRow > W * 0.9, `background row: ${seen.backgroundRow} of ${W}`);
  // weston-terminal: a solid black text area, below the panel, with its prompt in the top line.
  const { terminal } = seen;
  assert.ok(terminal.top > PANEL_HEIGHT, `terminal below the panel: ${JSON.stringify(terminal)}`);
  assert.ok(
    terminal.width > 300 && terminal.height > 200,
    `terminal size ${JSON.stringify(terminal)}`,
  );
  assert.ok(
    terminal.count > terminal.width * terminal.height * 0.9,
    `the terminal's black area is one rectangle: ${JSON.stringify(terminal)}`,
  );
  assert.equal(backend.stats().dropped, 0, 'no dropped virtio-gpu chains');
  // weston's idle desktop: the scanout's buffer is the one the window shows.
  t.diagnostic(assertGuestPath(plugin!, backend, TITLE));
  assert.match(
    qemu.console(),
    /guestfb-desktop: input \/dev\/input\/event\d+: guestfb/,
    "udev made an event node of guestfb's input device",
  );
});

/** Types `text` with the guest's keyboard (shift where the US layout needs it). */
async function type(text: string) {
  const shift = KEY_CODES.KEY_LEFTSHIFT!;
  for (const char of text) {
    const key = keyForChar(char);
    assert.ok(key, `no key for ${JSON.stringify(char)}`);
    if (key.shift) input!.key(shift, true);
    input!.key(key.code, true);
    input!.key(key.code, false);
    if (key.shift) input!.key(shift, false);
    // The guest reads 4 events per kick: let it keep up.
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

test('typed into weston-terminal through guestfb: a marker on the serial port; the launcher opens a terminal', async (t) => {
  assert.ok(compositor && backend && input && qemu && plugin, 'the desktop is up (first test)');
  const started = Date.now();
  await type('echo guestfb-typed-$((6*7)) >/dev/ttyS0\n');
  // The shell computed the marker: only the shell's output has "42", the typed text has "6*7".
  await qemu.waitForConsole(/guestfb-typed-42/);
  t.diagnostic(
    `typed command ran ${((Date.now() - started) / 1000).toFixed(1)} s after typing began`,
  );

  const background = (shot: Screenshot) => {
    let count = 0;
    for (let y = PANEL_HEIGHT; y < shot.height; y++)
      for (let x = 0; x < shot.width; x++)
        if ((shot.pixel(x, y) & 0xffffff) === BACKGROUND) count++;
    return count;
  };
  const before = background(screenshot(compositor, OUTPUT));
  // The panel's first launcher (weston-terminal) sits at its left end.
  input.pointerAt(20, PANEL_HEIGHT / 2, W, H);
  input.frame();
  await new Promise((resolve) => setTimeout(resolve, 300));
  input.button(BTN_LEFT, true);
  input.frame();
  input.button(BTN_LEFT, false);
  input.frame();
  // A second terminal covers part of the background (weston places new windows at random).
  let after = before;
  const opened = await waitFor(() => {
    after = background(screenshot(compositor!, OUTPUT));
    return after < before - 5000;
  }, WAIT_MS);
  t.diagnostic(`background pixels ${before} before the click, ${after} after`);
  assert.ok(opened, `no new window after clicking the launcher\n${debug()}`);
  // The new terminal has the keyboard focus: typing there runs too.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await type('echo guestfb-second-$((7*7)) >/dev/ttyS0\n');
  await qemu.waitForConsole(/guestfb-second-49/);
  t.diagnostic(`input test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const fdsBefore = fdsAtStart;

  qemu.kill('SIGKILL');
  await qemu.exited;
  plugin.stop();
  await compositor.close();
  backend.close();
  input.close();
  plugin = undefined;
  compositor = undefined;
  backend = undefined;
  input = undefined;
  let fds = fd.openFdCount();
  await waitFor(() => (fds = fd.openFdCount()) === fdsBefore, 30_000);
  assert.equal(fds, fdsBefore, 'every fd released');
});
