#!/usr/bin/env bash
# examples/custom-model against an installed dtrain: `cmake --install` this build into a temporary
# prefix, configure the example with find_package(dtrain) from that prefix only, build it, then
# train its resmlp model on a tiny CSV dataset: 1 rank, 2 ranks (mpiexec) stopped and resumed,
# and a bad model option that must name itself.
#   tests/e2e/custom_model_test.sh BUILD_DIR
# Environment (ctest sets them): MPIEXEC, CMAKE_GENERATOR, CXX, EXAMPLE_CXX_FLAGS (sanitizer builds).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: custom_model_test.sh BUILD_DIR}" && pwd)
mpiexec=${MPIEXEC:-mpiexec}
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_custom_model.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "custom_model_test: failed, kept $work" >&2; fi' EXIT
fail() { echo "custom_model_test: FAIL: $*" >&2; exit 1; }
phase() { echo "== [${SECONDS}s] $*"; }

phase "install $build into $work/prefix"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"

phase "configure and build examples/custom-model against the installed package"
cmake -S "$src/examples/custom-model" -B "$work/build" ${CMAKE_GENERATOR:+-G "$CMAKE_GENERATOR"} \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" ${CXX:+-DCMAKE_CXX_COMPILER="$CXX"} \
  ${EXAMPLE_CXX_FLAGS:+-DCMAKE_CXX_FLAGS="$EXAMPLE_CXX_FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$EXAMPLE_CXX_FLAGS"} \
  > "$work/configure.log" || { cat "$work/configure.log"; fail "configure"; }
found=$(sed -n 's/^dtrain_DIR:PATH=//p' "$work/build/CMakeCache.txt")
[ "$found" -ef "$work/prefix/lib/cmake/dtrain" ] || fail "find_package(dtrain) found '$found', not the installed prefix"
cmake --build "$work/build" -j2 > "$work/build.log" || { cat "$work/build.log"; fail "build"; }
trainer=$work/build/resmlp-train

phase "a tiny dataset: 4 Gaussian blobs in 16 features, as CSV, through the installed dtrain"
make_blobs "$work/prefix/bin/dtrain" "$work"

common=(--config "$src/examples/custom-model/resmlp.ini" --data.train="$work/train.h5" --data.test="$work/test.h5"
        --model.options=width=32,blocks=2 --train.batch_size=32 --train.log_every=10 --optim.warmup_steps=5
        --log.progress=lines)
accuracy() { sed -n 's/^result:.*test_accuracy=\([0-9.]*\).*/\1/p' "$1"; }

phase "train resmlp, 1 rank, 40 steps"
"$trainer" "${common[@]}" --train.max_steps=40 --log.dir="$work/one" > "$work/one.log" 2>&1 || { rc=$?; cat "$work/one.log"; fail "1-rank training exited $rc"; }
acc=$(accuracy "$work/one.log")
[ -n "$acc" ] || { cat "$work/one.log"; fail "no result: line"; }
awk -v a="$acc" 'BEGIN { exit !(a > 0.8) }' || { cat "$work/one.log"; fail "test accuracy $acc <= 0.8 (chance 0.25)"; }
echo "1 rank: test_accuracy=$acc"

phase "2 ranks (mpiexec): stop at step 15, resume to step 30"
"$mpiexec" -n 2 --oversubscribe "$trainer" "${common[@]}" --train.max_steps=30 --train.stop_at_step=15 \
  --log.dir="$work/two" > "$work/two-a.log" 2>&1 || { rc=$?; cat "$work/two-a.log"; fail "2-rank run exited $rc"; }
grep -q "interrupted=yes" "$work/two-a.log" || { cat "$work/two-a.log"; fail "stop_at_step did not stop"; }
"$mpiexec" -n 2 --oversubscribe "$trainer" "${common[@]}" --train.max_steps=30 --resume=auto \
  --log.dir="$work/two" > "$work/two-b.log" 2>&1 || { rc=$?; cat "$work/two-b.log"; fail "2-rank resume exited $rc"; }
grep -q "resumed from" "$work/two-b.log" || { cat "$work/two-b.log"; fail "no 'resumed from' line"; }
grep -q "^result: steps=30 .*interrupted=no" "$work/two-b.log" || { cat "$work/two-b.log"; fail "resume did not finish at step 30"; }

phase "a bad model option names itself"
if "$trainer" "${common[@]}" --model.options=depth=3 --train.max_steps=1 --log.dir="$work/bad" > "$work/bad.log" 2>&1; then
  fail "--model.options=depth=3 was accepted"
fi
grep -q "resmlp has no option 'depth'" "$work/bad.log" || { cat "$work/bad.log"; fail "error does not name 'depth'"; }

phase "passed"
