#!/usr/bin/env bash
# Checks that every tracked C++/CUDA file is laid out as .clang-format says (clang-format 14, Debian
# 12's clang-format package); exits 1 listing the files that are not, 77 (ctest's skip code, with
# the reason) when clang-format 14 is not there: other versions lay out some lines differently.
#   scripts/check-format.sh          check (ctest -R format_check runs this)
#   scripts/check-format.sh --fix    rewrite the files in place
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format > /dev/null; then
  echo "SKIPPED: clang-format not found (scripts/install-deps.sh installs Debian's clang-format)"
  exit 77
fi
version=$(clang-format --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
if [ "$version" != 14 ]; then
  echo "SKIPPED: clang-format $version found; the tree is laid out with clang-format 14 (Debian 12)"
  exit 77
fi
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.h' '*.cu' '*.cuh' '*.inc')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'check-format: not formatted: %s\n' "${bad[@]}" >&2
  echo "check-format: ${#bad[@]} of ${#files[@]} files differ from .clang-format (scripts/check-format.sh --fix)" >&2
  exit 1
fi
echo "check-format: all ${#files[@]} files match .clang-format"
