#!/usr/bin/env node
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
