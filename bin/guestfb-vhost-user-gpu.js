#!/usr/bin/env -S node --no-memory-reducer
// --no-memory-reducer: V8's memory reducer runs full GCs on a timer whenever the process looks
// idle, which a display serving a 30 Hz guest always does; they cost guestfb about half its CPU
// per guest frame (README, Performance). Node accepts the flag only on its command line.
// guestfb's GPU back-end as a vhost-user back-end program (QEMU's backend program conventions):
// the binary guestfb's vhost-user discovery descriptor names for libvirt.
import { main } from '../dist/plugin/backend-program/gpu.js';

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.stderr.write(
      `guestfb-vhost-user-gpu: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
