#!/usr/bin/env node
// Runs the compiled example compositor (npm run build first).
import '../dist/examples/compositor/cli.js';
