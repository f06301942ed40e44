import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyRing, PluginStats, formatStats } from '../../plugin/stats.js';

test('the latency ring reports nearest-rank percentiles', () => {
  const ring = new LatencyRing(200);
  assert.equal(ring.percentile(50), null);
  for (let i = 100; i >= 1; i--) ring.record(i);
  assert.equal(ring.count, 100);
  assert.equal(ring.percentile(50), 50);
  assert.equal(ring.percentile(99), 99);
  assert.equal(ring.percentile(100), 100);
  assert.equal(ring.percentile(0), 1);
  assert.throws(() => ring.percentile(101), RangeError);
});

test('the ring keeps only the newest samples', () => {
  const ring = new LatencyRing(4);
  for (const value of [1000, 1000, 1000, 1, 2, 3, 4]) ring.record(value);
  assert.equal(ring.count, 4);
  assert.equal(ring.percentile(100), 4);
  assert.equal(ring.percentile(50), 2);
  ring.clear();
  assert.equal(ring.count, 0);
  assert.throws(() => new LatencyRing(0), RangeError);
});

test('recordSince measures performance.now() intervals in microseconds', () => {
  const ring = new LatencyRing(2);
  const start = performance.now() - 5; // 5 ms ago
  assert.ok(ring.recordSince(start) >= 5000);
  const value = ring.percentile(50) ?? 0;
  assert.ok(value >= 5000, `${value} µs >= 5000`);
});

test('fallbacks are counted every time but reported once per reason', () => {
  const stats = new PluginStats(8);
  assert.equal(stats.noteFallback('no /dev/udmabuf'), true);
  assert.equal(stats.noteFallback('no /dev/udmabuf'), false);
  assert.equal(stats.noteFallback('list_limit'), true);
  stats.framesPresented = 3;
  stats.bytesCopied = 4096;
  stats.handoff.record(10);
  const snapshot = stats.snapshot();
  assert.deepEqual(snapshot, {
    framesPresented: 3,
    bytesCopied: 4096,
    dmabufsLive: 0,
    fallbackReason: 'no /dev/udmabuf',
    fallbacks: 3,
    copyBuffers: 0,
    copyBytes: 0,
    copyMappings: 0,
    copyEvictions: 0,
    handoffP50Us: 10,
    handoffP99Us: 10,
    handoffSamples: 1,
  });
  const text = formatStats(snapshot);
  assert.match(text, /frames presented: 3/);
  assert.match(text, /bytes copied: +4096/);
  assert.match(text, /no \/dev\/udmabuf \(3 buffer\(s\)\)/);
  assert.match(text, /p50 10\.0 µs/);
});
