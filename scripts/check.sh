#!/usr/bin/env bash
# Formatting and lint gates run by `npm test`: prettier, eslint, clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
npx prettier --check --log-level warn .
npx eslint --max-warnings 0 .
bash scripts/clang-format.sh
echo "check: formatting and lint clean"
