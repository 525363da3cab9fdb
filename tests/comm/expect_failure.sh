#!/usr/bin/env bash
# Runs an mpiexec job that must fail and checks how:
#   expect_failure.sh NP MAX_SECONDS PATTERN EXE ARGS...
# passes when the job exits non-zero within MAX_SECONDS, its output matches PATTERN (grep -E),
# and no process of EXE is left behind.
set -u
np=$1 max_s=$2 pattern=$3
shift 3
exe=$1
start=$(date +%s.%N)
out=$("${MPIEXEC:-mpiexec}" -n "$np" --oversubscribe "$@" 2>&1)
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "$out"
echo "--- exit code $rc after ${elapsed} s (limit ${max_s} s)"
fail=0
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; fail=1; fi
if (( $(echo "$elapsed > $max_s" | bc) )); then echo "FAIL: took longer than ${max_s} s"; fail=1; fi
if ! grep -Eq "$pattern" <<<"$out"; then echo "FAIL: output does not match '$pattern'"; fail=1; fi
sleep 1
if pgrep -f "^$exe( |$)" >/dev/null; then echo "FAIL: processes of $exe left behind:"; pgrep -af "^$exe( |$)"; fail=1; fi
exit $fail
