// The wake-up floor of a Node process (test/bench/wake-floor.ts): guestfb's own fd watch (the
// addon's uv_poll, as for a guest's kick) drains the kick eventfd (fd 3) and signals the ack
// eventfd (fd 4), and nothing else: one event-loop wake-up and one call into JavaScript.
import { fd } from '../../native/fd.js';

const KICK = 3;
const ACK = 4;
fd.watchReadable(KICK, () => {
  fd.eventfdRead(KICK);
  fd.eventfdWrite(ACK, 1);
});
fd.eventfdWrite(ACK, 1);
