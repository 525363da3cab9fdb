#!/usr/bin/env bash
# comm.zero=1 (ZeRO-1) through `dtrain train`: 4 ranks with and without it reach the same
# parameters and optimizer state (to reduction-order rounding), the log reports each rank's 1/4
# share of the optimizer state, and the ZeRO-1 checkpoint resumes at 2 ranks both with and
# without ZeRO-1 to the same parameters.
#   tests/e2e/zero_test.sh BUILD_DIR       (MPIEXEC: the mpirun to use)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: zero_test.sh BUILD_DIR}" && pwd)
command -v h5diff >/dev/null || { echo "zero_test: SKIPPED: h5diff not found (hdf5-tools)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_zero.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "zero_test: failed, kept $work" >&2; fi' EXIT
fail() { echo "zero_test: FAIL: $*" >&2; exit 1; }
dtrain=$build/launch/dtrain
mpirun=${MPIEXEC:-mpirun}

make_blobs "$dtrain" "$work"
args=(--config "$src/configs/fmnist-mlp.ini" --data.train="$work/train.h5" --data.test="$work/test.h5"
      --model.hidden=32,16 --optim.type=adamw --optim.lr=0.01 --optim.weight_decay=0.1 --optim.clip_norm=0.5
      --train.batch_size=8 --train.log_every=10 --log.progress=lines --comm.bucket_mb=0.002 --comm.first_bucket_mb=0.001)
run() {  # run NAME RANKS ARGS...
  local name=$1 n=$2
  shift 2
  timeout 240 "$mpirun" -n "$n" --oversubscribe "$dtrain" train "${args[@]}" --log.dir="$work/$name" "$@" \
    > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; fail "run $name exited non-zero"; }
}
values() { h5dump -d "$2" -y -w 0 -m %.9g "$1" | sed -n '/DATA {/,/}/p' | grep -v '[{}]' | tr ', ' '\n\n' | grep -v '^$'; }
same() {  # same A B GROUP TOLERANCE: every dataset of GROUP within TOLERANCE (h5diff would also
          # compare the checksum attributes, which differ whenever a bit does)
  local d n=0
  for d in $(h5ls -r "$1$3" | awk '$2 == "Dataset" {print $1}'); do
    paste <(values "$1" "$3$d") <(values "$2" "$3$d") |
      awk -v t="$4" -v d="$3$d" '{ x = $1 - $2; if (x < 0) x = -x; if (x > t || NF != 2) { print d ": " $1 " vs " $2; bad = 1; exit } }
        END { exit bad }' || fail "$3 of $1 and $2 differ by more than $4"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || fail "no datasets under $3 in $1"
}

echo "== 4 ranks with and without comm.zero=1, 20 steps"
run zero4 4 --comm.zero=1 --train.max_steps=20
run plain4 4 --comm.zero=0 --train.max_steps=20
grep "comm.zero=1: optimizer state" "$work/zero4.log" || fail "no optimizer-state line"
share=$(sed -n 's/.*comm.zero=1: optimizer state .* (\([0-9.]*\) of it, 1\/4 is 0.250).*/\1/p' "$work/zero4.log" | head -1)
[ -n "$share" ] || fail "the optimizer-state line does not give the share"
awk -v s="$share" 'BEGIN { exit !(s >= 0.2375 && s <= 0.2625) }' || fail "rank 0 holds $share of the state, not 1/4 (+-5 %)"
a=$work/zero4/ckpt/step-000000020.h5 b=$work/plain4/ckpt/step-000000020.h5
same "$a" "$b" /params 1e-5
same "$a" "$b" /optim 1e-5
"$dtrain" checkpoint verify "$a" > /dev/null || fail "the ZeRO-1 checkpoint does not verify"

echo "== its checkpoint resumes at 2 ranks, with and without comm.zero=1, 10 more steps"
run resume_plain2 2 --comm.zero=0 --train.max_steps=30 --checkpoint.resume="$a"
run resume_zero2 2 --comm.zero=1 --train.max_steps=30 --checkpoint.resume="$a"
for name in resume_plain2 resume_zero2; do
  grep -q "resumed from .* at step 20" "$work/$name.log" || { cat "$work/$name.log"; fail "$name did not resume at step 20"; }
done
same "$work/resume_plain2/ckpt/step-000000030.h5" "$work/resume_zero2/ckpt/step-000000030.h5" /params 1e-5
same "$work/resume_plain2/ckpt/step-000000030.h5" "$work/resume_zero2/ckpt/step-000000030.h5" /optim 1e-5
echo "== passed"
