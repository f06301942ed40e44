#!/usr/bin/env node
// The `guestfb` command: runs the compiled CLI (npm run build writes dist/).
import { main } from '../dist/plugin/cli.js';

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.stderr.write(`guestfb: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
