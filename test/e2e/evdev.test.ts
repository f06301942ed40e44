// End to end, input, through the commands a user runs: QEMU 10 boots the test guest with
// guestfb as its vhost-user GPU (two heads, drawpattern on both) AND its vhost-user input
// device, both served by a `guestfb-compositor --headless --vhost-user-gpu ev=...,heads=2,
// size=640x480 --vhost-user-input ev=... --input-script FIFO` process. Input is the script lines
// this test writes into the FIFO, applied as they arrive; screenshots come from its
// `screenshot NAME` lines.
// Inside the guest, examples/guest/evdump.c prints every event its /dev/input/event* nodes
// deliver to a virtio-serial port this test reads. Asserted: the EXACT evdev sequence for keys
// with a modifier, absolute positions in head 0's and head 1's windows (the combined layout is
// head 0 then head 1, 1280x480, ABS range 0..32767), both buttons, the wheel (hi-res and
// notches), and the releases guestfb sends when the keyboard focus moves or leaves and when
// the pointer leaves with a button down. Then 200 key events one at a time: the round trip
// (script line written -> guest read -> guest's line back on the host) is reported, p50/p99.
// The guest also sets a cursor on each head (drawpattern --cursor: virtio-gpu UPDATE_CURSOR with
// a hotspot): when the pointer is on a head's window, that head's cursor image is drawn at the
// host pointer minus its hotspot (guestfb's wl_pointer.set_cursor), checked in screenshots. The
// process's exit on SIGTERM (status 0, its input back-end's counters) ends the test.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import {
  bootGuest,
  type GuestImage,
  type QemuProcess,
  type QemuTier,
} from '../../examples/qemu/qemu.js';
import { waitFor, type Screenshot } from './helpers/windows.js';
import {
  failureContext,
  guestContext,
  prepareE2e,
  removeWorkDir,
  stopAll,
} from './helpers/context.js';
import { pixelsOf } from '../helpers/pixels.js';

const W = 640;
const H = 480;
const HEAD0 = 'ev — ev-0';
const HEAD1 = 'ev — ev-1';
/** Head 1's window sits right of head 0's with a gap; right of both is empty desktop. */
const HEAD1_X = W + 40;
const WAIT_MS = 300_000;
const LATENCY_EVENTS = 200;
/** drawpattern --cursor: a 16x16 square of one colour per head, hotspot (5, 3). */
const CURSOR_COLORS = [0xff8000, 0x8000ff];
const CURSOR_SQUARE = 16;
const CURSOR_HOT = { x: 5, y: 3 };

let tier: QemuTier;
let guest: GuestImage;
let workDir: string;
/** dist/test/e2e/ -> the repository root. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
let cli: ChildProcess | undefined;
let cliExited: Promise<number | null> | undefined;
let qemu: QemuProcess | undefined;
let script: FileHandle | undefined;
let serial: net.Socket | undefined;
/** guestfb-compositor's stderr (its log) and stdout, as they came. */
let cliLog = '';
let cliOut = '';
/** evdump's lines as they arrived, with the host time they arrived. */
const lines: { text: string; at: number }[] = [];

before(async () => {
  ({ tier, guest, workDir } = await prepareE2e('evdev', { kvm: true }));
});

after(async () => {
  // The reader first: a write blocked on the FIFO then fails instead of holding the close.
  if (cli && cli.exitCode === null) cli.kill('SIGKILL');
  await cliExited;
  serial?.destroy();
  await script?.close().catch(() => undefined);
  await stopAll({ qemu });
  removeWorkDir({ workDir });
});

function debug(): string {
  return [
    failureContext([['evdump', lines.map((l) => l.text)]]),
    guestContext('guestfb-compositor log', cliLog.split('\n'), qemu, 3000),
  ].join('\n');
}

/** guestfb's evdev node number (the guest also has the PC's AT keyboard). */
let guestfbNode = -1;

/** Events after evdump's "ready" on node `node` (default guestfb's), as "TYPE CODE VALUE". */
function events(node = guestfbNode, afterReady = true): { event: string; at: number }[] {
  const ready = lines.findIndex((l) => l.text === 'evdump: ready');
  if (ready < 0) return [];
  return lines.slice(afterReady ? ready + 1 : 0, afterReady ? undefined : ready).flatMap((l) => {
    const m = /^E (\d+) (\d+ \d+ -?\d+) \d+$/.exec(l.text);
    return m && Number(m[1]) === node ? [{ event: m[2]!, at: l.at }] : [];
  });
}

async function send(...scriptLines: string[]): Promise<number> {
  const at = performance.now();
  await script!.write(`${scriptLines.join('\n')}\n`);
  return at;
}

let consumed = 0;
/** Writes script lines; asserts the guest then reads exactly `expected` (and nothing else). */
async function expectEvents(what: string, scriptLines: string[], expected: string[]) {
  await send(...scriptLines);
  await waitFor(() => events().length >= consumed + expected.length, WAIT_MS, 10);
  const got = events()
    .slice(consumed)
    .map((e) => e.event);
  assert.deepEqual(got, expected, `${what}\n${debug()}`);
  consumed += expected.length;
}

let shots = 0;
/** A `screenshot NAME` script line; resolves with the PNG once the compositor logged it. */
async function scriptScreenshot(): Promise<Screenshot> {
  const name = `shot-${++shots}`;
  const file = path.join(workDir, 'shots', `${name}.png`);
  await send(`screenshot ${name}`);
  const written = await waitFor(
    () => cliLog.includes(`input script: screenshot ${file}`),
    60_000,
    10,
  );
  assert.ok(written, `no screenshot ${name}\n${debug()}`);
  return decodePng(readFileSync(file));
}

/** Asserts head `head`'s cursor square is drawn once, at the pointer (x, y) minus the hotspot. */
async function expectCursor(head: number, x: number, y: number) {
  const expected = {
    x: x - CURSOR_HOT.x,
    y: y - CURSOR_HOT.y,
    width: CURSOR_SQUARE,
    height: CURSOR_SQUARE,
    count: CURSOR_SQUARE * CURSOR_SQUARE,
  };
  let shot = await scriptScreenshot();
  // set_cursor follows the pointer's enter within a few loop turns: a few tries at most.
  for (let tries = 0; tries < 20; tries++) {
    if (JSON.stringify(pixelsOf(shot, CURSOR_COLORS[head]!)) === JSON.stringify(expected)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
    shot = await scriptScreenshot();
  }
  assert.deepEqual(
    pixelsOf(shot, CURSOR_COLORS[head]!),
    expected,
    `head ${head}'s cursor at the pointer (${x}, ${y})\n${debug()}`,
  );
  // The rest of the 64x64 cursor is transparent (alpha 0 in a B8G8R8X8 resource): no black box.
  let black = 0;
  for (let dy = 0; dy < 64; dy++)
    for (let dx = CURSOR_SQUARE; dx < 64; dx++)
      if (shot.pixel(expected.x + dx, expected.y + dy) === 0) black++;
  assert.ok(black < 64, `${black} black pixels beside head ${head}'s cursor square`);
  return shot;
}

const SYN = '0 0 0';
const key = (code: number, value: number) => [`1 ${code} ${value}`, SYN];
/** The absolute value guestfb gives layout pixel `px` of `size`: the centre of its range. */
const abs = (px: number, size: number) => Math.floor(((px + 0.5) * 32768) / size);

test('exact evdev events in the guest: keys, modifiers, both heads, buttons, wheel, focus loss', async (t) => {
  const started = Date.now();
  const gpuSocket = path.join(workDir, 'gpu.sock');
  const inputSocket = path.join(workDir, 'input.sock');
  const serialSocket = path.join(workDir, 'evdump.sock');
  const fifo = path.join(workDir, 'input-script');
  execFileSync('mkfifo', [fifo]);
  cli = spawn(
    process.execPath,
    [
      path.join(root, 'bin/guestfb-compositor.js'),
      '--headless',
      '--socket',
      'guestfb-evdev-e2e',
      '--output',
      '1600x600',
      '--vhost-user-gpu',
      `ev=${gpuSocket},heads=2,size=${W}x${H}`,
      '--vhost-user-input',
      `ev=${inputSocket}`,
      '--input-script',
      fifo,
      '--screenshot-dir',
      path.join(workDir, 'shots'),
    ],
    { env: { ...process.env, XDG_RUNTIME_DIR: workDir }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  cli.stdout!.setEncoding('utf8').on('data', (chunk: string) => (cliOut += chunk));
  cli.stderr!.setEncoding('utf8').on('data', (chunk: string) => (cliLog += chunk));
  cliExited = new Promise((resolve) => cli!.on('close', resolve));
  assert.ok(
    await waitFor(
      () => cli!.exitCode !== null || cliLog.includes('vhost-user input back-end on'),
      60_000,
      20,
    ),
  );
  assert.equal(cli.exitCode, null, `guestfb-compositor exited\n${cliLog}`);
  // The FIFO opens once the process reads it: from here each line is applied as it arrives.
  script = await open(fifo, 'w');

  const findPort =
    'for p in /sys/class/virtio-ports/*; do ' +
    '[ "$(cat $p/name)" = guestfb.evdump ] && port=/dev/${p##*/}; done; ';
  qemu = bootGuest(tier, guest, {
    gpuSocket,
    width: W,
    height: H,
    scanouts: 2,
    forceScanouts: true,
    fbcon: false,
    timeoutMs: 15 * 60_000,
    guestCommand:
      `${findPort}evdump --out $port & ` +
      `drawpattern --output all --mode ${W}x${H} --frames 1 --hold --cursor`,
    extraArgs: [
      '-chardev',
      `socket,id=inp,path=${inputSocket}`,
      '-device',
      'vhost-user-input-pci,chardev=inp',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=evdump,path=${serialSocket},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=evdump,name=guestfb.evdump',
    ],
  });
  assert.ok(
    await waitFor(() => existsSync(serialSocket), 60_000, 20),
    `QEMU made no serial socket\n${debug()}`,
  );
  serial = net.createConnection(serialSocket);
  let partial = '';
  serial.setEncoding('utf8');
  serial.on('data', (chunk: string) => {
    const at = performance.now();
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const text of parts) lines.push({ text, at });
  });
  serial.on('error', (error) => (cliLog += `evdump socket: ${error.message}\n`));

  await send(`wait-window ${WAIT_MS} ${HEAD0}`, `wait-window ${WAIT_MS} ${HEAD1}`);
  await send(`place 0 0 ${HEAD0}`, `place ${HEAD1_X} 0 ${HEAD1}`, 'screenshot placed');
  const placed = path.join(workDir, 'shots', 'placed.png');
  const ready = await waitFor(
    () =>
      lines.some((l) => l.text === 'evdump: ready') &&
      cliLog.includes(`input script: screenshot ${placed}`),
    WAIT_MS,
  );
  assert.ok(ready, `evdump ready and both head windows placed\n${debug()}`);
  t.diagnostic(`guest reading input ${((Date.now() - started) / 1000).toFixed(1)} s after start`);
  const devices = lines.filter((l) => l.text.startsWith('evdump: device')).map((l) => l.text);
  const ours = devices
    .map((text) => /^evdump: device (\d+) guestfb keyboard and tablet$/.exec(text))
    .filter((m) => m !== null);
  assert.equal(ours.length, 1, `one guestfb input device: ${JSON.stringify(devices)}`);
  guestfbNode = Number(ours[0]![1]);
  // evdump's own setup (autorepeat off) is the only thing before "ready".
  assert.deepEqual(
    events(guestfbNode, false).map((e) => e.event),
    ['20 0 500', '20 1 0', SYN],
  );

  // Head 0: a click at window pixel (100, 50) = layout pixel (100, 50) focuses its window.
  await expectEvents(
    'head 0: position and left click',
    ['move 100 50', 'button left press', 'button left release'],
    [`3 0 ${abs(100, 2 * W)}`, `3 1 ${abs(50, H)}`, SYN, ...key(272, 1), ...key(272, 0)],
  );
  assert.deepEqual([abs(100, 2 * W), abs(50, H)], [2572, 3447]);
  await expectCursor(0, 100, 50);
  await expectEvents(
    'shift+A: one SYN_REPORT per key',
    [
      'key KEY_LEFTSHIFT press',
      'key KEY_A press',
      'key KEY_A release',
      'key KEY_LEFTSHIFT release',
    ],
    [...key(42, 1), ...key(30, 1), ...key(30, 0), ...key(42, 0)],
  );
  // Head 1: window pixel (200, 300) is layout pixel (640 + 200, 300).
  await expectEvents(
    'head 1: position and right click',
    [`move ${HEAD1_X + 200} 300`, 'button right press', 'button right release'],
    [`3 0 ${abs(W + 200, 2 * W)}`, `3 1 ${abs(300, H)}`, SYN, ...key(273, 1), ...key(273, 0)],
  );
  assert.deepEqual([abs(W + 200, 2 * W), abs(300, H)], [21516, 20514]);
  const shot = await expectCursor(1, HEAD1_X + 200, 300);
  assert.equal(pixelsOf(shot, CURSOR_COLORS[0]!).count, 0, "head 0's cursor left with the pointer");
  await expectEvents(
    'wheel: one notch down, two up (hi-res in 1/120 notches, then whole notches)',
    ['wheel 1', 'wheel -2'],
    ['2 11 -120', '2 8 -1', SYN, '2 11 240', '2 8 2', SYN],
  );
  // Focus moves from head 1's window to head 0's with KEY_B down: released; head 0's window
  // got KEY_B in wl_keyboard.enter, which is not forwarded, nor is its later release.
  await expectEvents(
    'focus moves with a key down',
    ['key KEY_B press', `focus ${HEAD0}`, 'key KEY_B release', 'key KEY_Z press'],
    [...key(48, 1), ...key(48, 0), ...key(44, 1)],
  );
  await expectEvents(
    'focus leaves every window with keys down (both released, in the order they went down)',
    ['key KEY_C press', 'focus none', 'key KEY_C release', 'key KEY_Z release'],
    [...key(46, 1), ...key(44, 0), ...key(46, 0)],
  );
  await expectEvents(
    'the pointer leaves with a button down',
    [
      'button left press',
      'move 1400 100',
      'button left release',
      `move ${HEAD1_X + 10} 10`,
      'key KEY_D press',
      'key KEY_D release',
    ],
    [
      ...key(272, 1),
      ...key(272, 0),
      `3 0 ${abs(W + 10, 2 * W)}`,
      `3 1 ${abs(10, H)}`,
      SYN,
      ...key(32, 1),
      ...key(32, 0),
    ],
  );
  assert.doesNotMatch(cliLog, /input script .* line \d+:/, 'every script line applied');

  // Latency: one key event at a time, the next only after the guest's line came back.
  const roundTrips: number[] = [];
  for (let i = 0; i < LATENCY_EVENTS; i++) {
    const pressed = i % 2 === 0 ? 1 : 0;
    const sentAt = await send(`key KEY_L ${pressed ? 'press' : 'release'}`);
    const expected = key(38, pressed);
    await waitFor(() => events().length >= consumed + 2, WAIT_MS, 1);
    const got = events().slice(consumed, consumed + 2);
    assert.deepEqual(
      got.map((e) => e.event),
      expected,
      `latency event ${i}\n${debug()}`,
    );
    roundTrips.push(got[0]!.at - sentAt);
    consumed += 2;
  }
  roundTrips.sort((a, b) => a - b);
  const pct = (p: number) =>
    roundTrips[Math.min(roundTrips.length - 1, Math.floor(p * roundTrips.length))]!;
  t.diagnostic(
    `input round trip (script line written -> guest read -> its line back on the host), ` +
      `${LATENCY_EVENTS} key events: p50 ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms, ` +
      `max ${roundTrips[roundTrips.length - 1]!.toFixed(2)} ms`,
  );
  // Nothing arrived beyond what was asserted.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(events().length, consumed, `no extra events\n${debug()}`);
  const otherNodes = devices
    .map((text) => Number(/^evdump: device (\d+)/.exec(text)![1]))
    .filter((node) => node !== guestfbNode);
  for (const node of otherNodes) assert.deepEqual(events(node), [], `node ${node} stayed quiet`);
  // SIGTERM: the process exits 0 and prints its input back-end's counters.
  cli.kill('SIGTERM');
  const exit = await Promise.race([
    cliExited,
    new Promise((resolve) => setTimeout(() => resolve('still running after 30 s'), 30_000)),
  ]);
  assert.equal(exit, 0, `guestfb-compositor's exit on SIGTERM\n${debug()}`);
  const stats = /^guestfb ev input: (\{.*\})$/m.exec(cliOut);
  assert.ok(stats, `input counters printed on exit: ${cliOut}`);
  const counters = JSON.parse(stats[1]!) as Record<string, number>;
  assert.equal(counters.eventsDropped, 0, 'no input event dropped');
  t.diagnostic(`input stats: ${stats[1]}`);
  t.diagnostic(`test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
