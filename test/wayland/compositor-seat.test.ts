// wl_seat of the example compositor from a generated-proxy client: capabilities and name, and a
// keyboard whose keymap arrives as a sealed, NUL-terminated XKB text that libxkbcommon's format
// starts with, plus repeat info.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fd, Seal } from '../../native/fd.js';
import { Connection } from '../../protocol-xml/runtime/client.js';
import { WlSeatProxy } from '../../build/protocols/wayland.js';
import { createCompositor } from '../../examples/compositor/index.js';
import { KEYMAP } from '../../examples/compositor/keymap.js';

test('wl_seat: pointer and keyboard, a sealed keymap, repeat info', async () => {
  const baseline = fd.openFdCount();
  const compositor = createCompositor({
    outputs: [{ name: 'HEADLESS-1', width: 64, height: 64, refreshMhz: 60000 }],
    socket: false,
    log: () => {},
  });
  try {
    const connection = Connection.connectToFd(compositor.connectClient().fd);
    const registry = await connection.registry();
    const seat = registry.bindFirst(WlSeatProxy, 7);
    const seen: { capabilities?: number; name?: string } = {};
    seat.setListener({
      capabilities: (capabilities) => (seen.capabilities = capabilities),
      name: (name) => (seen.name = name),
    });
    await connection.roundtrip();
    assert.equal(seen.capabilities, 1 | 2, 'pointer | keyboard');
    assert.equal(seen.name, 'seat0');

    const keyboard = seat.getKeyboard();
    seat.getPointer();
    let keymap = '';
    let seals = 0;
    let repeat: [number, number] | null = null;
    keyboard.setListener({
      keymap: (format, keymapFd, size) => {
        assert.equal(format, 1, 'xkb_v1');
        const bytes = new Uint8Array(size);
        fd.pread(keymapFd, bytes, 0);
        seals = fd.getSeals(keymapFd);
        fd.close(keymapFd);
        keymap = new TextDecoder().decode(bytes);
      },
      repeatInfo: (rate, delay) => (repeat = [rate, delay]),
    });
    await connection.roundtrip();
    assert.equal(keymap, `${KEYMAP}\0`);
    assert.match(keymap, /^xkb_keymap \{/);
    assert.equal(seals, Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
    assert.deepEqual(repeat, [25, 600]);
    connection.disconnect();
  } finally {
    await compositor.close();
  }
  assert.equal(fd.openFdCount(), baseline);
});
