// The KMS backend's pure parts: the direct-scanout decision, connector/mode/CRTC/plane choice,
// the scanout tranche of the dmabuf feedback, and the --drm command line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd } from '../../native/fd.js';
import type { DrmConnector, DrmCrtc, DrmPlane, ModeInfo } from '../../native/drm.js';
import { parseCli, UsageError } from '../../examples/compositor/cli-args.js';
import { chooseScanout, planeFormatSet } from '../../examples/compositor/drm/scanout.js';
import { scanoutIndices, TRANCHE_FLAG_SCANOUT } from '../../examples/compositor/drm/feedback.js';
import { ScanoutFeedback } from '../../examples/compositor/drm/index.js';
import {
  modeRefreshMhz,
  pickConnector,
  pickMode,
  selectKms,
} from '../../examples/compositor/drm/select.js';
import {
  defaultDmabufFormats,
  Fourcc,
  Modifier,
} from '../../examples/compositor/dmabuf/formats.js';
import type { SceneLayer } from '../../examples/compositor/render/compose.js';

const plane = planeFormatSet([
  { format: Fourcc.XRGB8888, modifier: Modifier.LINEAR },
  { format: Fourcc.ARGB8888, modifier: Modifier.LINEAR },
  { format: Fourcc.RGB565, modifier: Modifier.LINEAR },
]);

function layer(
  width: number,
  height: number,
  extra: Partial<SceneLayer['geometry']> & { x?: number; y?: number; format?: number } = {},
): SceneLayer {
  const { x = 0, y = 0, format = Fourcc.XRGB8888, ...geometry } = extra;
  return {
    buffer: { width, height, format, beginRead: () => null, endRead: () => {} },
    x,
    y,
    geometry: { bufferWidth: width, bufferHeight: height, scale: 1, transform: 0, ...geometry },
  };
}

const dmabuf = (l: SceneLayer) => ({ format: l.buffer.format, modifier: Modifier.LINEAR });

test('a fullscreen opaque dma-buf is a direct-scanout candidate with the whole buffer', () => {
  const decision = chooseScanout([layer(640, 480)], 640, 480, dmabuf, plane);
  assert.equal(decision.kind, 'direct');
  if (decision.kind !== 'direct') return;
  assert.deepEqual(decision.source, { x: 0, y: 0, width: 640 * 65536, height: 480 * 65536 });
  assert.deepEqual(decision.destination, { x: 0, y: 0, width: 640, height: 480 });
});

test('the implicit modifier counts as linear; a viewport source becomes SRC_* in 16.16', () => {
  const implicit = () => ({ format: Fourcc.XRGB8888, modifier: Modifier.INVALID });
  const scaled = layer(640, 480, {
    viewport: {
      source: { x: 10, y: 20, width: 320.5, height: 240 },
      destination: { width: 800, height: 600 },
    },
  });
  const decision = chooseScanout([scaled], 800, 600, implicit, plane);
  assert.equal(decision.kind, 'direct');
  if (decision.kind !== 'direct') return;
  assert.deepEqual(decision.source, {
    x: 10 * 65536,
    y: 20 * 65536,
    width: 320.5 * 65536,
    height: 240 * 65536,
  });
});

test('everything that cannot go on the primary plane is composed, with the reason', () => {
  const reasons: [string, ReturnType<typeof chooseScanout>][] = [
    ['no surface', chooseScanout([], 640, 480, dmabuf, plane)],
    ['2 surfaces', chooseScanout([layer(640, 480), layer(10, 10)], 640, 480, dmabuf, plane)],
    ['not a dma-buf', chooseScanout([layer(640, 480)], 640, 480, () => null, plane)],
    ['transform', chooseScanout([layer(640, 480, { transform: 2 })], 640, 480, dmabuf, plane)],
    ['does not cover', chooseScanout([layer(320, 240)], 640, 480, dmabuf, plane)],
    ['does not cover', chooseScanout([layer(640, 480, { x: 1 })], 640, 480, dmabuf, plane)],
    [
      'not opaque',
      chooseScanout([layer(640, 480, { format: Fourcc.ARGB8888 })], 640, 480, dmabuf, plane),
    ],
    [
      'does not take',
      chooseScanout([layer(640, 480, { format: Fourcc.XBGR8888 })], 640, 480, dmabuf, plane),
    ],
  ];
  for (const [expected, decision] of reasons) {
    assert.equal(decision.kind, 'compose', expected);
    if (decision.kind === 'compose') assert.match(decision.reason, new RegExp(expected));
  }
  // A layer entirely off the output does not count.
  const offscreen = layer(100, 100, { x: 700 });
  assert.equal(chooseScanout([layer(640, 480), offscreen], 640, 480, dmabuf, plane).kind, 'direct');
});

const mode = (width: number, height: number, extra: Partial<ModeInfo> = {}): ModeInfo => ({
  clock: 25175,
  hdisplay: width,
  hsyncStart: width + 16,
  hsyncEnd: width + 112,
  htotal: 800,
  hskew: 0,
  vdisplay: height,
  vsyncStart: height + 10,
  vsyncEnd: height + 12,
  vtotal: 525,
  vscan: 0,
  vrefresh: 60,
  flags: 0,
  type: 0,
  name: `${width}x${height}`,
  ...extra,
});

const props = (entries: Record<string, bigint>) =>
  new Map(
    Object.entries(entries).map(([name, value]) => [
      name,
      { id: 1, name, flags: 0, value, enums: new Map(), enumName: null, range: null },
    ]),
  );

function connector(id: number, typeName: string, status: DrmConnector['status'], crtc = 0n) {
  return {
    id,
    type: typeName === 'Writeback' ? 18 : 15,
    typeName,
    name: `${typeName}-1`,
    status,
    modes: [mode(1024, 768, { type: 8 }), mode(640, 480)],
    encoders: [],
    possibleCrtcs: [10],
    writeback: typeName === 'Writeback',
    properties: props({ CRTC_ID: crtc }),
  } satisfies DrmConnector;
}

test('connector, mode, CRTC and planes are chosen like a seat-less compositor would', () => {
  const connectors = [
    connector(1, 'Writeback', 'unknown'),
    connector(2, 'Virtual', 'connected', 10n),
  ];
  assert.equal(pickConnector(connectors).name, 'Virtual-1', 'writeback only when asked for');
  assert.equal(pickConnector(connectors, 'Writeback').name, 'Writeback-1');
  assert.throws(() => pickConnector(connectors, 'HDMI-A-1'), /no connector "HDMI-A-1"/);
  assert.throws(() => pickConnector([connector(1, 'Virtual', 'disconnected')]), /no connected/);
  assert.equal(pickMode(connectors[1]!).hdisplay, 1024, 'the preferred mode');
  assert.equal(pickMode(connectors[1]!, { width: 640, height: 480 }).vdisplay, 480);
  assert.throws(() => pickMode(connectors[1]!, { width: 641, height: 480 }), /no mode 641x480/);
  assert.equal(modeRefreshMhz(mode(640, 480)), 59940);

  const crtcs: DrmCrtc[] = [{ id: 10, index: 0, fbId: 0, mode: null, properties: props({}) }];
  const planeOf = (id: number, type: DrmPlane['type']): DrmPlane => ({
    id,
    type,
    possibleCrtcs: [10],
    formats: [Fourcc.XRGB8888],
    inFormats: null,
    properties: props({ CRTC_ID: 0n }),
  });
  const planes = [planeOf(5, 'overlay'), planeOf(3, 'cursor'), planeOf(4, 'primary')];
  const selection = selectKms(connectors, crtcs, planes, { mode: { width: 640, height: 480 } });
  assert.equal(selection.connector.id, 2);
  assert.equal(selection.crtc.id, 10);
  assert.equal(selection.primary.id, 4);
  assert.equal(selection.cursor?.id, 3);
  assert.deepEqual(
    selection.overlays.map((p) => p.id),
    [5],
  );
});

test('dmabuf feedback: the DRM device is main device, the scanout tranche comes first', () => {
  const formats = defaultDmabufFormats();
  const indices = scanoutIndices(formats, plane);
  const taken = indices.map((i) => formats.entries()[i]!);
  assert.deepEqual(
    taken.map((e) => `${e.format.toString(16)} ${e.modifier.toString(16)}`),
    [Fourcc.XRGB8888, Fourcc.ARGB8888, Fourcc.RGB565].flatMap((f) => [
      `${f.toString(16)} 0`,
      `${f.toString(16)} ffffffffffffff`,
    ]),
  );
  const baseline = fd.openFdCount();
  const feedback = new ScanoutFeedback(formats, 0xe200n, plane, fd);
  try {
    assert.equal(feedback.tranches.length, 2);
    assert.equal(feedback.tranches[0]!.flags, TRANCHE_FLAG_SCANOUT);
    assert.deepEqual(
      [...new Uint16Array(feedback.tranches[0]!.formatIndices.slice().buffer)],
      indices,
    );
    assert.equal(feedback.tranches[1]!.flags, 0);
    assert.equal(new DataView(feedback.mainDevice.buffer).getBigUint64(0, true), 0xe200n);
    assert.deepEqual(feedback.tranches[0]!.targetDevice, feedback.mainDevice);
  } finally {
    feedback.destroy();
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('--drm options: device, connector, mode, debug; the headless default output goes away', () => {
  const options = parseCli([
    '--drm',
    'vkms',
    '--drm-connector',
    'Writeback',
    '--drm-mode',
    '640x480@60',
    '--drm-debug',
  ]);
  assert.deepEqual(options.drm, {
    device: 'vkms',
    connector: 'Writeback',
    mode: { width: 640, height: 480, refresh: 60 },
    debugFrames: true,
  });
  assert.deepEqual(options.outputs, []);
  assert.equal(parseCli(['--drm', '/dev/dri/card1', '--output', '800x600']).outputs.length, 1);
  assert.throws(() => parseCli(['--drm-mode', '640x480']), UsageError);
  assert.throws(() => parseCli(['--drm', 'vkms', '--drm-mode', 'big']), UsageError);
});
