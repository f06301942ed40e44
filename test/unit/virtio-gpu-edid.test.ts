import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateEdid, parseEdid } from '../../plugin/sources/virtio-gpu/edid.js';

test('EDID: header, version, checksum and the preferred mode for common sizes', () => {
  for (const [width, height] of [
    [640, 480],
    [1280, 800],
    [1920, 1080],
    [2560, 1600],
    [3840, 2160],
    [4095, 4095],
  ] as const) {
    const edid = generateEdid({ width, height, name: 'guestfb' })!;
    assert.equal(edid.length, 128);
    assert.deepEqual([...edid.subarray(0, 8)], [0, 255, 255, 255, 255, 255, 255, 0]);
    assert.deepEqual([edid[18], edid[19]], [1, 4]);
    const parsed = parseEdid(edid);
    assert.deepEqual(
      parsed,
      { checksumOk: true, width, height, name: 'guestfb' },
      `${width}x${height}`,
    );
    const clock = (edid[54]! | (edid[55]! << 8)) * 10_000;
    const hTotal = width + (edid[57]! | ((edid[58]! & 0xf) << 8));
    const vTotal = height + (edid[60]! | ((edid[61]! & 0xf) << 8));
    const refresh = clock / (hTotal * vTotal);
    assert.ok(refresh > 20 && refresh < 61, `${width}x${height}: ${refresh.toFixed(1)} Hz`);
    assert.equal(edid[126], 0, 'no extension blocks');
  }
});

test('EDID: manufacturer id, long and odd names, unrepresentable modes', () => {
  const edid = generateEdid({
    width: 800,
    height: 600,
    name: 'a very long monitor name',
    manufacturer: 'GFB',
  })!;
  const id = (edid[8]! << 8) | edid[9]!;
  const letters = [10, 5, 0].map((s) => String.fromCharCode(((id >> s) & 31) + 64)).join('');
  assert.equal(letters, 'GFB');
  assert.equal(parseEdid(edid).name, 'a very long m');
  assert.equal(parseEdid(generateEdid({ width: 800, height: 600, name: 'é\nx' })!).name, 'x');
  assert.equal(generateEdid({ width: 4096, height: 2160, name: 'x' }), null);
  assert.equal(generateEdid({ width: 0, height: 600, name: 'x' }), null);
  assert.equal(generateEdid({ width: 1.5, height: 600, name: 'x' }), null);
});
