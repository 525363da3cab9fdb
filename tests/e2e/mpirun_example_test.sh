#!/usr/bin/env bash
# examples/mpirun/train.sh with a one-host hostfile (localhost slots=2): TIME_LIMIT stops the run
# through timeout -> SIGUSR1 to mpirun -> every rank, which checkpoints and exits 0; the same
# command then resumes from that checkpoint.
#   tests/e2e/mpirun_example_test.sh BUILD_DIR       (MPIEXEC: the mpirun to use)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: mpirun_example_test.sh BUILD_DIR}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_mpirun_example.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "mpirun_example_test: failed, kept $work" >&2; fi' EXIT
fail() { echo "mpirun_example_test: FAIL: $*" >&2; exit 1; }
export DTRAIN=$build/launch/dtrain DTRAIN_DEVICE=cpu MPIRUN=${MPIEXEC:-mpirun}

make_blobs "$DTRAIN" "$work"
echo "localhost slots=2" > "$work/hosts"
args=("$work/hosts" "$src/configs/fmnist-mlp.ini" --data.train="$work/train.h5" --data.test="$work/test.h5"
      --model.hidden=32 --train.batch_size=16 --train.log_every=200 --log.progress=lines --log.dir="$work/run")

echo "== TIME_LIMIT=5: stopped by SIGUSR1 through mpirun, checkpoint, exit 0"
rc=0
TIME_LIMIT=5 bash "$src/examples/mpirun/train.sh" "${args[@]}" --train.max_steps=100000000 > "$work/a.log" 2>&1 || rc=$?
cat "$work/a.log"
[ "$rc" = 0 ] || fail "the time-limited run exited $rc"
steps=$(sed -n 's/^result: steps=\([0-9]*\) .*interrupted=yes.*/\1/p' "$work/a.log")
[ -n "$steps" ] || fail "no 'result: ... interrupted=yes' line"

echo "== the same command resumes from step $steps and trains 20 more"
rc=0
bash "$src/examples/mpirun/train.sh" "${args[@]}" --train.max_steps=$((steps + 20)) > "$work/b.log" 2>&1 || rc=$?
cat "$work/b.log"
[ "$rc" = 0 ] || fail "the resumed run exited $rc"
grep -q "resumed from .* at step $steps " "$work/b.log" || fail "did not resume at step $steps"
grep -q "^result: steps=$((steps + 20)) .*interrupted=no" "$work/b.log" || fail "did not finish at step $((steps + 20))"
echo "== passed"
