// A full socket: the client's flush gets EAGAIN, the binding polls for writable and sends the
// rest when the peer drains. The peer here is a raw socketpair end, so every byte is checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { native, isSystemError } from '../../native/index.js';
import { fd } from '../../native/fd.js';
import { coreProtocolSpecs, countFds, roundtrip } from './native-helpers.js';

native.defineInterfaces(coreProtocolSpecs());

// The timeout is a safety net so a broken writable path fails instead of hanging CI.
test(
  'requests queued behind a full socket go out once the peer drains it',
  { timeout: 60_000 },
  async () => {
    const baseline = countFds();
    const [clientEnd, peerEnd] = fd.socketpair(true);
    // Fill the client end's send buffer with junk before libwayland owns it.
    let junk = 0;
    const block = new Uint8Array(65536);
    for (;;) {
      try {
        junk += fd.unixSend(clientEnd, block);
      } catch (error) {
        if (isSystemError(error) && error.code === 'EAGAIN') break;
        throw error;
      }
    }
    assert.ok(junk > 0);

    const connection = native.connectToFd(clientEnd);
    const errors: unknown[] = [];
    connection.onError((info) => errors.push(info));
    const done = roundtrip(connection); // wl_display.sync(new id 2)
    // Let the loop run its flush a few times: the socket is full, nothing can be written.
    for (let i = 0; i < 5; i++) await nextTurn();

    const received: Buffer[] = [];
    let total = 0;
    const request = await new Promise<Buffer>((resolve, reject) => {
      const stop = fd.watchReadable(peerEnd, (error) => {
        if (error) return reject(error);
        for (;;) {
          const message = fd.unixRecv(peerEnd, 1 << 20);
          if (message === null) break;
          if (message.data.length === 0) return reject(new Error('client hung up'));
          received.push(Buffer.from(message.data));
          total += message.data.length;
        }
        if (total >= junk + 12) {
          stop();
          resolve(Buffer.concat(received).subarray(junk));
        }
      });
    });
    assert.equal(request.length, 12, 'exactly one request after the junk');
    assert.deepEqual(
      [request.readUInt32LE(0), request.readUInt32LE(4), request.readUInt32LE(8)],
      [1, (12 << 16) | 0, 2],
      'wl_display.sync(new id 2)',
    );

    // Answer as a server would: wl_callback@2.done(77).
    const event = Buffer.alloc(12);
    event.writeUInt32LE(2, 0);
    event.writeUInt32LE((12 << 16) | 0, 4);
    event.writeUInt32LE(77, 8);
    assert.equal(fd.unixSend(peerEnd, event), 12);
    assert.equal(await done, 77);
    assert.deepEqual(errors, []);

    connection.disconnect();
    fd.close(peerEnd);
    await nextTurn();
    assert.equal(countFds(), baseline);
  },
);
