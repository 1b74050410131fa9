#!/bin/bash
# The tree as .clang-format formats it, and the sources clean under .clang-tidy's checks.
#   tools/lint.sh BUILD_DIR     # BUILD_DIR holds compile_commands.json (every build writes it)
#   tools/lint.sh --format      # reformat the tree in place (no check)
# Exit 0: clean; 1: a file to reformat or a finding (each named); 77: the tools are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' 2>/dev/null ||
                       find src include tests -name '*.cpp' -o -name '*.hpp')
if [ "${1:-}" = --format ]; then
  clang-format -i "${sources[@]}"
  exit 0
fi
build=${1:?usage: tools/lint.sh BUILD_DIR | --format}
for tool in clang-format clang-tidy; do
  command -v "$tool" > /dev/null || { echo "lint: skipped: $tool is not installed"; exit 77; }
done
status=0
clang-format --dry-run --Werror "${sources[@]}" || {
  echo "lint: reformat with tools/lint.sh --format"; status=1; }
# The library's and main's sources (the headers through them), one per clang-tidy, the largest
# first, so that the last to finish are small ones.
mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep '^src/.*\.cpp$' |
                     grep -v sanitizer_defaults | xargs wc -c | sort -rn | awk '$2 != "total" {print $2}')
printf '%s\n' "${units[@]}" |
  xargs -P "$(nproc)" -n 1 clang-tidy -p "$build" --quiet 2> /dev/null || status=1
exit $status
