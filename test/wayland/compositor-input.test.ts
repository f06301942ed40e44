/**
 * Scripted input through the example compositor's seat into guestfb's window (in-process, a
 * pattern guest): the script file's lines become wl_pointer/wl_keyboard events, guestfb's
 * presenter turns them into the evdev-level calls a guest input device gets. Asserts the exact
 * sequence, including releases when focus leaves and a bad line reported by number.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { createCompositor } from '../../examples/compositor/index.js';
import { parseScriptLine, runInputScript } from '../../examples/compositor/input-script.js';
import { compositorScriptTarget } from '../../examples/compositor/script-target.js';
import { createGuestfbPlugin, type GuestInputSink } from '../../plugin/index.js';
import { PatternSource } from '../../plugin/sources/pattern.js';
import { settleUntil } from '../helpers/wait.js';

class RecordingSink implements GuestInputSink {
  readonly calls: string[] = [];
  key(code: number, pressed: boolean): void {
    this.calls.push(`key ${code} ${pressed ? 1 : 0}`);
  }
  button(code: number, pressed: boolean): void {
    this.calls.push(`button ${code} ${pressed ? 1 : 0}`);
  }
  pointerAt(x: number, y: number, width: number, height: number): void {
    this.calls.push(`at ${x} ${y} of ${width}x${height}`);
  }
  wheel(vertical120: number, horizontal120: number): void {
    this.calls.push(`wheel ${vertical120} ${horizontal120}`);
  }
  frame(): void {
    this.calls.push('frame');
  }
}

test('input script -> compositor seat -> guestfb window -> exact guest input calls', async (t) => {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 640, height: 400, refreshMhz: 60000 }],
    socket: false,
    log: () => undefined,
  });
  const source = new PatternSource({ width: 320, height: 200, rate: 0 });
  const sink = new RecordingSink();
  const logs: string[] = [];
  const plugin = createGuestfbPlugin({
    sources: [{ name: 'guest', source }],
    inputs: [{ name: 'guest', sink }],
    udmabuf: false,
    log: (line) => logs.push(line),
  });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'guestfb-input-script-'));
  try {
    assert.equal(await compositor.use(plugin), true);
    await settleUntil(plugin, () => compositor.scene.windows.length === 1, 'the window mapped');
    const window = compositor.scene.windows[0]!;
    const [wx, wy] = [window.x, window.y];
    const script = [
      `move ${wx + 100} ${wy + 50}`,
      'button left press',
      'button left release',
      '# shifted a, then "b!" typed',
      'key KEY_LEFTSHIFT press',
      'key KEY_A press',
      'key KEY_A release',
      'key KEY_LEFTSHIFT release',
      'type b!',
      'wheel 2',
      'wheel -1',
      'frobnicate 3',
      'key KEY_NOPE press',
      'button right press',
      `move ${wx + 319} ${wy + 199}`,
      `move ${wx + 400} ${wy + 10}`,
      'key KEY_C press',
      'button left press',
      'button left release',
      'key KEY_C release',
      'screenshot shot',
      // Windows by title: wait for one, place it, move the keyboard focus without a click.
      'wait-window 1000 guest — pattern',
      'place 10 20 guest — pattern',
      'move 15 30',
      'focus guest — pattern',
      'key KEY_D press',
      'focus none',
      'key KEY_D release',
      'focus nobody',
      'wait-window 0 nobody',
    ];
    const file = path.join(directory, 'script');
    fs.writeFileSync(file, `${script.join('\n')}\n`);
    const problems: string[] = [];
    const result = await runInputScript(
      file,
      compositorScriptTarget(compositor, directory, () => undefined),
      (message) => problems.push(message),
    );
    assert.deepEqual(problems, [
      `input script ${file} line 12: unknown command "frobnicate": "frobnicate 3"`,
      `input script ${file} line 13: unknown key "KEY_NOPE" (evdev names, e.g. KEY_A): "key KEY_NOPE press"`,
      `input script ${file} line 29: no window "nobody"`,
      `input script ${file} line 30: no window "nobody" after 0 ms`,
    ]);
    assert.deepEqual(result, { lines: script.length, errors: 4 });
    assert.deepEqual([window.x, window.y], [10, 20], 'placed');
    assert.ok(fs.statSync(path.join(directory, 'shot.png')).size > 0);
    const expected = [
      'at 100 50 of 320x200',
      'frame',
      'button 272 1',
      'frame',
      'button 272 0',
      'frame',
      'key 42 1',
      'key 30 1',
      'key 30 0',
      'key 42 0',
      'key 48 1',
      'key 48 0',
      'key 42 1',
      'key 2 1',
      'key 2 0',
      'key 42 0',
      'wheel 240 0',
      'frame',
      'wheel -120 0',
      'frame',
      'button 273 1',
      'frame',
      'at 319 199 of 320x200',
      'frame',
      // The pointer leaves with the right button down: released.
      'button 273 0',
      'frame',
      // A click outside takes keyboard focus away with KEY_C down: released.
      'key 46 1',
      'key 46 0',
      // Placed at 10,20: output 15,30 is 5,10 in the window.
      'at 5 10 of 320x200',
      'frame',
      // Focus given by title, then taken away with KEY_D down: released.
      'key 32 1',
      'key 32 0',
    ];
    await settleUntil(
      plugin,
      () => sink.calls.length >= expected.length,
      `every input call (got ${JSON.stringify(sink.calls)})`,
    );
    assert.deepEqual(sink.calls, expected);
    t.diagnostic(`forwarder counters: ${JSON.stringify(plugin.presenter!.input.counters)}`);
  } finally {
    plugin.stop();
    await compositor.close();
    source.close();
    fs.rmSync(directory, { recursive: true, force: true });
  }
  assert.equal(fd.openFdCount(), baseline, 'fd count back to baseline');
});

test('input script lines: parse errors name the problem', () => {
  assert.deepEqual(parseScriptLine('  move 10 20 '), { kind: 'move', x: 10, y: 20 });
  assert.deepEqual(parseScriptLine('type a A'), {
    kind: 'type',
    keys: [
      { code: 30, shift: false },
      { code: 57, shift: false },
      { code: 30, shift: true },
    ],
  });
  assert.deepEqual(parseScriptLine('# comment'), { kind: 'none' });
  assert.deepEqual(parseScriptLine('wait-window 500  A — A-0 '), {
    kind: 'wait-window',
    ms: 500,
    title: 'A — A-0',
  });
  assert.deepEqual(parseScriptLine('place -5 7 my  window'), {
    kind: 'place',
    x: -5,
    y: 7,
    title: 'my  window',
  });
  assert.deepEqual(parseScriptLine('focus none'), { kind: 'focus', title: null });
  assert.deepEqual(parseScriptLine('focus A — A-1'), { kind: 'focus', title: 'A — A-1' });
  for (const [line, message] of [
    ['move 10', /move takes 2 argument/],
    ['move -1 5', /move X: -1 outside/],
    ['button left hold', /expected press or release, got "hold"/],
    ['button up press', /unknown button "up"/],
    ['wheel x', /wheel N: "x" is not an integer/],
    ['wait 1.5', /not an integer/],
    ['screenshot ../x', /may use letters/],
    ['type é', /no US-layout key types "é"/],
    ['wait-window 100', /wait-window takes MS and a TITLE/],
    ['wait-window x title', /wait-window MS: "x" is not an integer/],
    ['place 1 2', /place takes X, Y and a TITLE/],
    ['place 1 y title', /place Y: "y" is not an integer/],
    ['focus', /focus takes a TITLE or "none"/],
  ] as const) {
    assert.throws(() => parseScriptLine(line), message, line);
  }
});
