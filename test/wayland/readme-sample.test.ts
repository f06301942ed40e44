/**
 * The plugin sample in README.md runs as written: its code block is taken from the README, its
 * import pointed at the built plugin/index.js, and run against the example compositor (which the
 * README's own compositor sample creates as `compositor`). Every `create…` name the block
 * mentions, in code or comment, must be a function plugin/index.ts exports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createCompositor } from '../../examples/compositor/index.js';
import * as pluginApi from '../../plugin/index.js';
import { until } from '../helpers/wait.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The README's ```ts block that imports from ./plugin/index.js. */
function pluginSample(): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const sample = blocks.find((block) => block.includes("from './plugin/index.js'"));
  assert.ok(sample, 'README.md has a ```ts block importing ./plugin/index.js');
  return sample;
}

test('every create… function the README plugin sample names is exported by plugin/index.ts', () => {
  const names = new Set(pluginSample().match(/\bcreate\w+/g));
  assert.ok(names.has('createVhostUserGpuBackend') && names.has('createSharedBarSource'));
  for (const name of names) {
    const value = (pluginApi as Record<string, unknown>)[name];
    assert.equal(typeof value, 'function', `plugin/index.ts exports ${name}`);
  }
});

test('the README plugin sample shows its guest in-process and as a client of a socket', async () => {
  const runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-readme-'));
  const saved = { runtime: process.env.XDG_RUNTIME_DIR, display: process.env.WAYLAND_DISPLAY };
  process.env.XDG_RUNTIME_DIR = runtimeDir;
  process.env.WAYLAND_DISPLAY = 'guestfb-readme';
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 1280, height: 720, refreshMhz: 60000 }],
    socket: 'guestfb-readme',
    log: () => undefined,
  });
  const hooks = globalThis as { guestfbReadmeCompositor?: unknown };
  hooks.guestfbReadmeCompositor = compositor;
  const pluginUrl = pathToFileURL(path.join(root, 'dist/plugin/index.js')).href;
  const module = path.join(runtimeDir, 'sample.mjs');
  writeFileSync(
    module,
    'const compositor = globalThis.guestfbReadmeCompositor;\n' +
      pluginSample().replace("'./plugin/index.js'", `'${pluginUrl}'`) +
      'export { running, source };\n',
  );
  let sample: { running: pluginApi.GuestfbPlugin; source: { close(): void } } | undefined;
  try {
    sample = (await import(pathToFileURL(module).href)) as typeof sample;
    const { running } = sample!;
    // Two windows: the in-process plugin's and the standalone client's, which presented a frame.
    await until(() => compositor.stats().windows === 2, 'both windows', {
      step: () => running.settle(),
    });
    await until(() => running.stats().framesPresented >= 1, 'a frame from the client', {
      step: () => running.settle(),
    });
  } finally {
    sample?.running.stop();
    await compositor.close();
    sample?.source.close();
    delete hooks.guestfbReadmeCompositor;
    for (const [name, value] of [
      ['XDG_RUNTIME_DIR', saved.runtime],
      ['WAYLAND_DISPLAY', saved.display],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(runtimeDir, { recursive: true, force: true });
  }
});
