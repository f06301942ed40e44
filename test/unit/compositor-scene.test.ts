import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scene } from '../../examples/compositor/core/scene.js';
import {
  Surface,
  SurfaceCommitError,
  type ClientBuffer,
  type PresentedInfo,
} from '../../examples/compositor/core/surface.js';
import { Fourcc } from '../../examples/compositor/dmabuf/formats.js';
import type { RenderBuffer } from '../../examples/compositor/render/compose.js';

/** A solid-colour XRGB buffer standing in for a wl_buffer. */
function solid(width: number, height: number, color: number, copyOnCommit: boolean) {
  const bytes = new Uint8Array(width * height * 4);
  const words = new Uint32Array(bytes.buffer);
  words.fill(color);
  const render: RenderBuffer = {
    width,
    height,
    format: Fourcc.XRGB8888,
    beginRead: () => [{ bytes, offset: 0, stride: width * 4 }],
    endRead: () => {},
  };
  const buffer = {
    render,
    copyOnCommit,
    alive: true,
    releases: 0,
    words,
    release() {
      buffer.releases++;
    },
    unreadable() {},
  };
  return buffer satisfies ClientBuffer;
}

function scene() {
  return new Scene([{ name: 'OUT-1', width: 320, height: 240, refreshMhz: 60000 }], {
    background: 0x000010,
  });
}

function mapped(s: Scene, color: number, copy: boolean) {
  const surface = new Surface();
  s.addSurface(surface);
  const buffer = solid(40, 30, color, copy);
  surface.attach(buffer, 0, 0);
  surface.commit();
  const window = s.mapWindow(surface);
  return { surface, buffer, window };
}

test('a mapped window is drawn at its cascade position; frame callbacks fire on the tick', () => {
  const s = scene();
  const { surface, window } = mapped(s, 0xff0000, true);
  const output = s.outputs[0];
  let done = 0;
  surface.frame({ done: () => done++ });
  surface.commit();
  assert.equal(done, 0, 'not before the tick');
  s.tick(output, 5_000_000n);
  assert.equal(done, 1);
  assert.equal(output.image.pixel(window.x, window.y), 0xff0000);
  assert.equal(output.image.pixel(window.x + 40, window.y), 0x000010);
  s.tick(output, 6_000_000n);
  assert.equal(done, 1, 'one done per callback');
  const second = mapped(s, 0x00ff00, true);
  assert.notDeepEqual([second.window.x, second.window.y], [window.x, window.y], 'cascaded');
});

test('shm buffers are copied and released at commit; others after the replacing commit rendered', () => {
  const s = scene();
  const output = s.outputs[0];
  const { buffer: shm, window } = mapped(s, 0x112233, true);
  assert.equal(shm.releases, 1, 'released right after the copy');
  shm.words.fill(0xffffff); // the client reuses its buffer: the screen must not change
  s.tick(output, 1n);
  assert.equal(output.image.pixel(window.x + 1, window.y + 1), 0x112233);

  const { surface, buffer: first } = mapped(s, 0x0000ff, false);
  assert.equal(first.releases, 0);
  const second = solid(40, 30, 0x00ff00, false);
  surface.attach(second, 0, 0);
  surface.damage(0, 0, 40, 30);
  surface.commit();
  assert.equal(first.releases, 0, 'not before the replacing commit was rendered');
  s.tick(output, 2n);
  assert.equal(first.releases, 1);
  assert.equal(second.releases, 0, 'still on screen');
  surface.destroy();
  s.removeSurface(surface);
  assert.equal(second.releases, 1, 'released when its surface goes');
});

test('only the damaged part of a window is recomposed', () => {
  const s = scene();
  const output = s.outputs[0];
  const { surface, window } = mapped(s, 0x808080, false);
  s.tick(output, 1n);
  const repaints = output.repaints;
  s.tick(output, 2n);
  assert.equal(output.repaints, repaints, 'no damage, no repaint');
  const next = solid(40, 30, 0xffffff, false);
  surface.attach(next, 0, 0);
  surface.damageBuffer(0, 0, 10, 10);
  surface.commit();
  assert.deepEqual(output.damage.rectangles, [{ x: window.x, y: window.y, width: 10, height: 10 }]);
  s.tick(output, 3n);
  assert.equal(output.image.pixel(window.x + 5, window.y + 5), 0xffffff);
  assert.equal(output.image.pixel(window.x + 20, window.y + 20), 0x808080, 'undamaged: old pixels');
});

test('presentation feedback: presented with the tick time, or discarded when superseded', () => {
  const s = scene();
  const output = s.outputs[0];
  const { surface } = mapped(s, 0x808080, false);
  const events: string[] = [];
  let info: PresentedInfo | null = null;
  const sink = (name: string) => ({
    presented: (i: PresentedInfo) => {
      info = i;
      events.push(`${name} presented`);
    },
    discarded: () => events.push(`${name} discarded`),
  });
  surface.presentationFeedback(sink('a'));
  surface.commit();
  surface.presentationFeedback(sink('b'));
  surface.commit();
  s.tick(output, 123_456_789n);
  assert.deepEqual(events, ['a discarded', 'b presented']);
  assert.ok(info);
  const presented = info as PresentedInfo;
  assert.equal(presented.timeNs, 123_456_789n);
  assert.equal(presented.refreshNs, 16_666_667);
  assert.equal(presented.outputName, 'OUT-1');
});

test('synchronized subsurfaces apply their state on the parent commit', () => {
  const s = scene();
  const output = s.outputs[0];
  const { surface: parent, window } = mapped(s, 0x0000ff, false);
  const child = new Surface();
  s.addSurface(child);
  const link = parent.addChild(child);
  link.pendingX = 5;
  link.pendingY = 6;
  child.attach(solid(4, 4, 0xff0000, false), 0, 0);
  child.commit();
  s.tick(output, 1n);
  assert.equal(child.content, null, 'cached until the parent commits');
  parent.commit();
  s.tick(output, 2n);
  assert.equal(output.image.pixel(window.x + 5, window.y + 6), 0xff0000);
  assert.equal(output.image.pixel(window.x + 4, window.y + 6), 0x0000ff);
  assert.ok(parent.restack(child, parent, false), 'place_below parent');
  assert.equal(s.layers()[1].buffer, child.content, 'restacking waits for the parent commit');
  parent.commit();
  assert.equal(s.layers()[0].buffer, child.content);
});

test('a buffer that is not a multiple of the scale is rejected', () => {
  const surface = new Surface();
  surface.attach(solid(41, 30, 0, false), 0, 0);
  surface.setBufferScale(2);
  assert.throws(
    () => surface.commit(),
    (e: unknown) => e instanceof SurfaceCommitError && e.kind === 'invalid-size',
  );
});
