import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FramePacer } from '../../plugin/present/pacer.js';
import type { DamageAccumulator } from '../../plugin/present/damage.js';
import { PluginStats } from '../../plugin/stats.js';

function recorder(bytesPerCommit = 0) {
  const commits: { x: number; y: number; width: number; height: number }[][] = [];
  return {
    commits,
    commit(damage: DamageAccumulator): number {
      commits.push(damage.toRects());
      return bytesPerCommit * damage.area();
    },
  };
}

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
