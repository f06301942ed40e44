#!/usr/bin/env -S node --no-memory-reducer
// --no-memory-reducer: V8's memory reducer runs full GCs on a timer whenever the process looks
// idle, which a display serving a 30 Hz guest always does; they cost guestfb about half its CPU
// per guest frame (README, Performance). Node accepts the flag only on its command line.
// Runs the compiled example compositor (npm run build first).
import '../dist/examples/compositor/cli.js';
