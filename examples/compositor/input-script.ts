/**
 * Scripted input for headless runs (`guestfb-compositor --input-script FILE`): one command per
 * line, applied as lines arrive, so FILE may be stdin ("-") or a FIFO a test writes into after
 * the guest is ready. Commands:
 *
 *   move X Y                              pointer to output coordinates (global space)
 *   button left|right|middle press|release
 *   key KEY_NAME press|release            Linux evdev names: KEY_A, KEY_LEFTSHIFT, ...
 *   type TEXT                             the rest of the line, as US-layout key presses
 *   wheel N                               N notches, positive = down
 *   wait MS                               pause before the next line
 *   screenshot NAME                       NAME.png of every output (NAME-<output>.png if several)
 *   wait-window MS TITLE                  wait up to MS for a window titled TITLE (xdg title)
 *   place X Y TITLE                       move that window's top-left to output coordinates
 *   focus TITLE | focus none              keyboard focus to that window (raised), or to none
 *
 * Blank lines and lines starting with # are skipped. A bad line is reported with its number and
 * skipped; it never stops the compositor.
 */
import fs from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import {
  BTN_LEFT,
  BTN_MIDDLE,
  BTN_RIGHT,
  KEY_CODES,
  keyForChar,
} from '../../plugin/virtio-input/evdev.js';

export type ScriptCommand =
  | { kind: 'move'; x: number; y: number }
  | { kind: 'button'; code: number; pressed: boolean }
  | { kind: 'key'; code: number; pressed: boolean }
  | { kind: 'type'; keys: { code: number; shift: boolean }[] }
  | { kind: 'wheel'; notches: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'screenshot'; name: string }
  | { kind: 'wait-window'; ms: number; title: string }
  | { kind: 'place'; x: number; y: number; title: string }
  | { kind: 'focus'; title: string | null }
  | { kind: 'none' };

export class ScriptError extends Error {}

const BUTTONS: Record<string, number> = { left: BTN_LEFT, right: BTN_RIGHT, middle: BTN_MIDDLE };

function state(word: string | undefined): boolean {
  if (word === 'press') return true;
  if (word === 'release') return false;
  throw new ScriptError(`expected press or release, got "${word ?? ''}"`);
}

function integer(word: string | undefined, what: string, min: number, max: number): number {
  if (word === undefined || !/^-?\d{1,9}$/.test(word)) {
    throw new ScriptError(`${what}: "${word ?? ''}" is not an integer`);
  }
  const value = Number(word);
  if (value < min || value > max) throw new ScriptError(`${what}: ${value} outside ${min}..${max}`);
  return value;
}

/** The words of `line` after its first `skip` words (a title may hold any spaces). */
function restAfter(line: string, skip: number): string {
  let rest = line.trim();
  for (let i = 0; i < skip; i++) rest = rest.replace(/^\S+\s*/, '');
  return rest;
}

/** Parses one line; throws ScriptError naming the problem. */
export function parseScriptLine(line: string): ScriptCommand {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return { kind: 'none' };
  const [command, ...args] = trimmed.split(/\s+/);
  const arity = (n: number) => {
    if (args.length !== n)
      throw new ScriptError(`${command} takes ${n} argument(s), got ${args.length}`);
  };
  switch (command) {
    case 'move':
      arity(2);
      return {
        kind: 'move',
        x: integer(args[0], 'move X', 0, 65535),
        y: integer(args[1], 'move Y', 0, 65535),
      };
    case 'button': {
      arity(2);
      const code = BUTTONS[args[0]!];
      if (code === undefined)
        throw new ScriptError(`unknown button "${args[0]}" (left, right, middle)`);
      return { kind: 'button', code, pressed: state(args[1]) };
    }
    case 'key': {
      arity(2);
      const code = KEY_CODES[args[0]!];
      if (code === undefined)
        throw new ScriptError(`unknown key "${args[0]}" (evdev names, e.g. KEY_A)`);
      return { kind: 'key', code, pressed: state(args[1]) };
    }
    case 'type': {
      const text = line.replace(/^\s*type\s/, '');
      if (!/^\s*type\s/.test(line) || text.length === 0) throw new ScriptError('type needs TEXT');
      const keys = [...text].map((char) => {
        const key = keyForChar(char);
        if (!key) throw new ScriptError(`type: no US-layout key types "${char}"`);
        return key;
      });
      return { kind: 'type', keys };
    }
    case 'wheel':
      arity(1);
      return { kind: 'wheel', notches: integer(args[0], 'wheel N', -1000, 1000) };
    case 'wait':
      arity(1);
      return { kind: 'wait', ms: integer(args[0], 'wait MS', 0, 3_600_000) };
    case 'screenshot':
      arity(1);
      if (!/^[\w.-]{1,100}$/.test(args[0]!)) {
        throw new ScriptError(`screenshot NAME "${args[0]}" may use letters, digits, . _ -`);
      }
      return { kind: 'screenshot', name: args[0]! };
    case 'wait-window': {
      const title = restAfter(trimmed, 2);
      if (title === '') throw new ScriptError('wait-window takes MS and a TITLE');
      return { kind: 'wait-window', ms: integer(args[0], 'wait-window MS', 0, 3_600_000), title };
    }
    case 'place': {
      const title = restAfter(trimmed, 3);
      if (title === '') throw new ScriptError('place takes X, Y and a TITLE');
      return {
        kind: 'place',
        x: integer(args[0], 'place X', -65535, 65535),
        y: integer(args[1], 'place Y', -65535, 65535),
        title,
      };
    }
    case 'focus': {
      const title = restAfter(trimmed, 1);
      if (title === '') throw new ScriptError('focus takes a TITLE or "none"');
      return { kind: 'focus', title: title === 'none' ? null : title };
    }
    default:
      throw new ScriptError(`unknown command "${command}"`);
  }
}

/** What a script drives. */
export interface ScriptTarget {
  moveTo(x: number, y: number): void;
  button(code: number, pressed: boolean): void;
  key(code: number, pressed: boolean): void;
  wheel(notches: number): void;
  /** Writes NAME's screenshots; returns the files written. */
  screenshot(name: string): string[];
  /** Whether a window titled `title` is mapped. */
  hasWindow(title: string): boolean;
  /** Moves the window titled `title` to output coordinates; throws when there is none. */
  place(title: string, x: number, y: number): void;
  /** Keyboard focus to the window titled `title` (raised), or to none; throws when none has it. */
  focus(title: string | null): void;
  /** Sends what the commands queued to the clients. */
  flush(): void;
}

const KEY_LEFTSHIFT = 42;

/** Applies one parsed command (waits for `wait`). */
export async function applyCommand(command: ScriptCommand, target: ScriptTarget): Promise<void> {
  switch (command.kind) {
    case 'move':
      target.moveTo(command.x, command.y);
      break;
    case 'button':
      target.button(command.code, command.pressed);
      break;
    case 'key':
      target.key(command.code, command.pressed);
      break;
    case 'type':
      for (const key of command.keys) {
        if (key.shift) target.key(KEY_LEFTSHIFT, true);
        target.key(key.code, true);
        target.key(key.code, false);
        if (key.shift) target.key(KEY_LEFTSHIFT, false);
      }
      break;
    case 'wheel':
      target.wheel(command.notches);
      break;
    case 'wait':
      target.flush();
      await new Promise((resolve) => setTimeout(resolve, command.ms));
      break;
    case 'screenshot':
      target.screenshot(command.name);
      break;
    case 'wait-window': {
      const deadline = Date.now() + command.ms;
      while (!target.hasWindow(command.title)) {
        if (Date.now() >= deadline) {
          throw new Error(`no window "${command.title}" after ${command.ms} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      break;
    }
    case 'place':
      target.place(command.title, command.x, command.y);
      break;
    case 'focus':
      target.focus(command.title);
      break;
    case 'none':
      break;
  }
  target.flush();
}

/**
 * The script's bytes. A FIFO is opened non-blocking and read through the event loop (a libuv
 * pipe): a file stream would block a thread-pool thread in open() until a writer comes and in
 * read() while a writer idles, and the process cannot exit while one does (SIGTERM left
 * guestfb-compositor hanging after its statistics while a test held the FIFO open). epoll
 * reports nothing before a writer has written or gone, so there is no early end of file.
 */
function openScript(path: string): Readable {
  if (path === '-') return process.stdin;
  if (fs.statSync(path).isFIFO()) {
    const fifo = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    return new net.Socket({ fd: fifo, readable: true, writable: false }).setEncoding('utf8');
  }
  return fs.createReadStream(path, { encoding: 'utf8' });
}

/**
 * Reads `path` ("-" = stdin; a FIFO works: lines apply as they are written) and applies each
 * line in order. Resolves at end of input; `log` gets bad lines and screenshots.
 */
export async function runInputScript(
  path: string,
  target: ScriptTarget,
  log: (message: string) => void,
  signal?: AbortSignal,
): Promise<{ lines: number; errors: number }> {
  const input = openScript(path);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let number = 0;
  let errors = 0;
  try {
    for await (const line of lines) {
      if (signal?.aborted) break;
      number++;
      let command: ScriptCommand;
      try {
        command = parseScriptLine(line);
      } catch (error) {
        if (!(error instanceof ScriptError)) throw error;
        errors++;
        log(`input script ${path} line ${number}: ${error.message}: ${JSON.stringify(line)}`);
        continue;
      }
      try {
        await applyCommand(command, target);
      } catch (error) {
        errors++;
        log(`input script ${path} line ${number}: ${(error as Error).message}`);
      }
    }
  } finally {
    lines.close();
    if (input !== process.stdin) input.destroy();
  }
  return { lines: number, errors };
}
