#!/usr/bin/env bash
# clang-format over native/ (and examples/guest C code); --fix rewrites, default only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find native examples/guest test/bench -name '*.cc' -o -name '*.h' -o -name '*.c' 2>/dev/null | sort)
((${#files[@]})) || exit 0
if [[ ${1:-} == --fix ]]; then
  clang-format -i "${files[@]}"
else
  clang-format --dry-run --Werror "${files[@]}"
fi
