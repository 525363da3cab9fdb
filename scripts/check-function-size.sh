#!/usr/bin/env bash
# Lists the functions over 60 lines (clang-tidy's readability-function-size) in the libraries,
# binaries, examples and benchmarks; exits 1 when there is one. A declarative table written as a
# function may carry NOLINT(readability-function-size) with the reason.
#   scripts/check-function-size.sh [BUILD_DIR] [FILE...]   (BUILD_DIR: a build configured with
#   -DCMAKE_EXPORT_COMPILE_COMMANDS=ON, default build; FILEs default to every .cpp of those folders)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
command -v clang-tidy > /dev/null || { echo "check-function-size: clang-tidy not found (apt-get install clang-tidy)" >&2; exit 2; }
[ -f "$build/compile_commands.json" ] ||
  { echo "check-function-size: $build/compile_commands.json missing (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2; exit 2; }
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files 'core/*.cpp' 'optim/*.cpp' 'comm/*.cpp' 'data/*.cpp' 'export/*.cpp' 'inference/*.cpp' \
                                    'launch/*.cpp' 'serve/*.cpp' 'bench/*.cpp' 'examples/*.cpp' | grep -v '^core/cuda/')
fi
config="{Checks: '-*,readability-function-size', CheckOptions: [{key: readability-function-size.LineThreshold, value: 60}]}"
out=$(printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet -config="$config" 2>/dev/null || true)
long=$(awk -v root="$PWD/" '
  /warning: function .* exceeds/ { split($0, a, ": warning: function "); where = a[1]; name = a[2]; sub(/ exceeds.*/, "", name) }
  /note: [0-9]+ lines including/ && where != "" { match($0, /[0-9]+ lines/); sub(root, "", where)
                                                  print where " " name " " substr($0, RSTART, RLENGTH); where = "" }' <<<"$out" | sort -u)
if [ -n "$long" ]; then
  printf "%s\n" "$long"
  echo "check-function-size: $(wc -l <<<"$long") function(s) over 60 lines" >&2
  exit 1
fi
echo "check-function-size: no function over 60 lines in ${#files[@]} files"
