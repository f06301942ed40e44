// A server built on the raw native binding, inspected by Debian's wayland-info (a client nobody
// here wrote): it must see exactly our globals, their versions, the shm formats and the mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native, type NativeClient, type NativeResource } from '../../native/index.js';
import {
  assertServerInfo,
  coreProtocolSpecs,
  opcodes,
  useTempRuntimeDir,
  waylandInfo,
} from './native-helpers.js';

const specs = coreProtocolSpecs();
native.defineInterfaces(specs);

/** A resource whose requests only honour `destroy`-type requests named in `destructors`. */
function plainResource(
  client: NativeClient,
  iface: string,
  version: number,
  id: number,
  destructors: string[] = [],
): NativeResource {
  const requestNames = specs.find((s) => s.name === iface)!.requests.map((r) => r.name);
  const resource: NativeResource = client.createResource(iface, version, id, (opcode) => {
    if (destructors.includes(requestNames[opcode]!)) resource.destroy();
  });
  return resource;
}

test('wayland-info lists exactly the globals of a native-binding server', async () => {
  const runtime = useTempRuntimeDir();
  const display = native.createServerDisplay();
  const errors: unknown[] = [];
  display.onError((error) => errors.push(error));
  try {
    const socket = display.addSocket('guestfb-info-0');
    assert.equal(socket, 'guestfb-info-0');

    const compositor = opcodes(specs, 'wl_compositor');
    display.createGlobal('wl_compositor', 5, (client, version, id) => {
      client.createResource('wl_compositor', version, id, (opcode, args) => {
        if (opcode === compositor['request:create_surface']) {
          plainResource(client, 'wl_surface', version, args[0] as number, ['destroy']);
        } else if (opcode === compositor['request:create_region']) {
          plainResource(client, 'wl_region', 1, args[0] as number, ['destroy']);
        }
      });
    });

    const shmFormats = [0, 1, 0x34324258 /* XBGR8888 */];
    display.createGlobal('wl_shm', 1, (client, version, id) => {
      const shm = client.createResource('wl_shm', version, id, () => {
        shm.postError(0, 'pools are not supported by this test server');
      });
      for (const format of shmFormats) shm.postEvent(0, [format]);
    });

    const output = opcodes(specs, 'wl_output');
    display.createGlobal('wl_output', 4, (client, version, id) => {
      const resource = plainResource(client, 'wl_output', version, id, ['release']);
      resource.postEvent(output['event:geometry']!, [
        0,
        0,
        527,
        296,
        0,
        'guestfb',
        'virtual screen',
        0,
      ]);
      resource.postEvent(output['event:mode']!, [0x1 | 0x2, 1920, 1080, 60000]);
      if (version >= 2) resource.postEvent(output['event:scale']!, [1]);
      if (version >= 4) {
        resource.postEvent(output['event:name']!, ['GUESTFB-1']);
        resource.postEvent(output['event:description']!, ['guestfb test output']);
      }
      if (version >= 2) resource.postEvent(output['event:done']!, []);
    });

    assertServerInfo(await waylandInfo(socket, runtime.dir), {
      width: 1920,
      height: 1080,
      model: 'virtual screen',
      name: 'GUESTFB-1',
    });
    assert.deepEqual(errors, []);
  } finally {
    display.destroy();
    assert.equal(display.destroyed, true);
    runtime.remove();
  }
});
