import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FramePacer } from '../../plugin/present/pacer.js';
import type { DamageAccumulator } from '../../plugin/present/damage.js';
import { PluginStats } from '../../plugin/stats.js';

function recorder(bytesPerCommit = 0) {
  const commits: { x: number; y: number; width: number; height: number }[][] = [];
  /** Whether each commit asked for a frame callback. */
  const callbacks: boolean[] = [];
  return {
    commits,
    callbacks,
    commit(damage: DamageAccumulator, frameCallback: boolean): number {
      commits.push(damage.toRects());
      callbacks.push(frameCallback);
      return bytesPerCommit * damage.area();
    },
  };
}

const full = [{ x: 0, y: 0, width: 100, height: 100 }];

test('nothing commits before the surface is ready; readiness commits what accumulated', () => {
  const stats = new PluginStats();
  const target = recorder();
  const pacer = new FramePacer(stats, target, 100, 100);
  pacer.flush([{ x: 0, y: 0, width: 10, height: 10 }]);
  assert.equal(target.commits.length, 0);
  pacer.setReady(true);
  assert.deepEqual(target.commits, [[{ x: 0, y: 0, width: 10, height: 10 }]]);
  assert.equal(stats.framesPresented, 1);
  assert.equal(stats.handoff.count, 1);
});

test('flushes during a pending frame merge and commit on done', () => {
  const stats = new PluginStats();
  const target = recorder(4);
  const pacer = new FramePacer(stats, target, 100, 100);
  pacer.setReady(true);
  pacer.flush([{ x: 0, y: 0, width: 10, height: 10 }]);
  assert.equal(target.commits.length, 1);
  assert.equal(pacer.waitingForFrame, true);
  pacer.flush([{ x: 20, y: 20, width: 5, height: 5 }]);
  pacer.flush([
    { x: 21, y: 21, width: 2, height: 2 },
    { x: 50, y: 0, width: 1, height: 1 },
  ]);
  assert.equal(target.commits.length, 1, 'no commit while a frame is pending');
  pacer.frameDone();
  assert.deepEqual(target.commits[1], [
    { x: 20, y: 20, width: 5, height: 5 },
    { x: 50, y: 0, width: 1, height: 1 },
  ]);
  assert.equal(stats.framesPresented, 2);
  assert.equal(stats.bytesCopied, 4 * (100 + 26));
  // Done with nothing pending: no empty commit.
  pacer.frameDone();
  assert.equal(target.commits.length, 2);
  // Out-of-buffer damage is not a frame.
  pacer.flush([{ x: 500, y: 500, width: 5, height: 5 }]);
  assert.equal(target.commits.length, 2);
  assert.equal(stats.handoff.count, 2);
});

test('reset damages the whole new buffer; stop drops state', () => {
  const stats = new PluginStats();
  const target = recorder();
  const pacer = new FramePacer(stats, target, 100, 100);
  pacer.reset(40, 30);
  pacer.setReady(true);
  assert.deepEqual(target.commits, [[{ x: 0, y: 0, width: 40, height: 30 }]]);
  pacer.stop();
  pacer.flush([{ x: 0, y: 0, width: 1, height: 1 }]);
  assert.equal(target.commits.length, 1);
});

test('a guest slower than the display commits without frame callbacks; a faster one is paced', () => {
  const stats = new PluginStats();
  const target = recorder();
  let clock = 1000;
  const pacer = new FramePacer(stats, target, 100, 100, {
    unpacedIntervalMs: 20,
    now: () => clock,
  });
  pacer.setReady(true);
  pacer.flush(full);
  // The first commit of a ready surface asks for a callback; nothing commits until it fires.
  assert.deepEqual(target.callbacks, [true]);
  clock += 5;
  pacer.flush(full);
  assert.equal(target.commits.length, 1);
  clock += 11;
  pacer.frameDone(); // 16 ms after the last commit: the merged flush is paced again
  assert.deepEqual(target.callbacks, [true, true]);
  clock += 16;
  pacer.frameDone();
  assert.equal(pacer.waitingForFrame, false);
  // Now the guest draws every 33 ms: each flush commits at once, without a callback.
  for (let i = 0; i < 3; i++) {
    clock += 33;
    pacer.flush(full);
    assert.equal(pacer.waitingForFrame, false, 'no callback pending after an unpaced commit');
  }
  assert.deepEqual(target.callbacks, [true, true, false, false, false]);
  assert.equal(pacer.unpacedCommits, 3);
  // A flush 19 ms after that commit is faster than the display: paced, and the next one merges.
  clock += 19;
  pacer.flush(full);
  assert.deepEqual(target.callbacks.slice(5), [true]);
  clock += 40;
  pacer.flush(full);
  assert.equal(target.commits.length, 6, 'merged while the callback is pending');
  pacer.frameDone();
  assert.deepEqual(target.callbacks.slice(5), [true, false], '40 ms later: unpaced');
  assert.equal(stats.framesPresented, 7);
  // A new buffer's first commit is paced, whatever the interval.
  clock += 100;
  pacer.reset(100, 100);
  pacer.flush(full);
  assert.deepEqual(target.callbacks.slice(7), [true]);
});

test('a buffer that copies is always paced by frame callbacks', () => {
  const stats = new PluginStats();
  const target = recorder(4);
  let clock = 0;
  const pacer = new FramePacer(stats, target, 100, 100, { now: () => clock });
  pacer.reset(100, 100, false);
  pacer.setReady(true);
  for (let i = 0; i < 3; i++) {
    clock += 100;
    pacer.frameDone();
    pacer.flush(full);
  }
  assert.deepEqual(target.callbacks, [true, true, true, true]);
  assert.equal(pacer.unpacedCommits, 0);
});
