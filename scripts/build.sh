#!/usr/bin/env bash
# Builds the native addon (incrementally) and the TypeScript (scanner, generated protocols, rest).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f build/Makefile || binding.gyp -nt build/Makefile ]]; then
  npx node-gyp configure --silent
fi
npx node-gyp build --silent
node scripts/build-ts.mjs
