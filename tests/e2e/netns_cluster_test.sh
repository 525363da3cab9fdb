#!/usr/bin/env bash
# scripts/netns-cluster.sh: 2 emulated nodes (network namespaces, links shaped to 1 Gbit/s, Open
# MPI over TCP only) train the mlp and must reach bitwise the same parameters and optimizer state
# as 2 ranks on one host over shared memory (a 2-rank sum is the same in any order). Skips (77)
# where namespaces cannot be made (no root, a container without CAP_SYS_ADMIN).
#   tests/e2e/netns_cluster_test.sh BUILD_DIR       (MPIEXEC: the mpirun for the one-host run)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: netns_cluster_test.sh BUILD_DIR}" && pwd)
cluster=$src/scripts/netns-cluster.sh
export DTRAIN_NETNS_ID=${DTRAIN_NETNS_ID:-77}  # a cluster of its own: never touches one you have up
rc=0
"$cluster" check || rc=$?
[ "$rc" = 0 ] || { [ "$rc" = 77 ] && echo "netns_cluster_test: SKIPPED (see the reason above)"; exit "$rc"; }
command -v h5diff >/dev/null || { echo "netns_cluster_test: SKIPPED: h5diff not found (hdf5-tools)"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_netns.XXXXXX")
trap 'rc=$?; "$cluster" down; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "netns_cluster_test: failed, kept $work" >&2; fi' EXIT
fail() { echo "netns_cluster_test: FAIL: $*" >&2; exit 1; }
dtrain=$build/launch/dtrain

make_blobs "$dtrain" "$work"
"$cluster" up 2 --rate 1gbit
"$cluster" status
args=(--config "$src/configs/fmnist-mlp.ini" --data.train="$work/train.h5" --data.test="$work/test.h5"
      --model.hidden=32 --train.batch_size=16 --train.max_steps=40 --train.log_every=20 --log.progress=lines)

echo "== 2 nodes x 1 rank over the emulated network"
timeout 240 "$cluster" mpirun -n 2 --map-by node "$dtrain" train "${args[@]}" --log.dir="$work/nodes" > "$work/nodes.log" 2>&1 ||
  { cat "$work/nodes.log"; fail "the 2-node run failed"; }
cat "$work/nodes.log"
grep -q "world: 2 ranks on 2 node(s)" "$work/nodes.log" || fail "the ranks did not run on 2 nodes"

echo "== 2 ranks on this host"
timeout 240 "${MPIEXEC:-mpirun}" -n 2 --oversubscribe "$dtrain" train "${args[@]}" --log.dir="$work/host" > "$work/host.log" 2>&1 ||
  { cat "$work/host.log"; fail "the one-host run failed"; }
grep "^result:" "$work/host.log"

a=$work/nodes/ckpt/step-000000040.h5 b=$work/host/ckpt/step-000000040.h5
for group in /params /optim; do
  h5diff "$a" "$b" "$group" "$group" || fail "$group differs between the 2-node and the one-host run"
done
echo "== passed: parameters and optimizer state are bitwise the same"
