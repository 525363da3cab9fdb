#!/usr/bin/env bash
# examples/load-balancing/run.sh on a model trained here (the blobs mlp, a few steps): two
# dtrain-serve behind haproxy, one stopped with SIGTERM and restarted under load, zero failed
# requests. Skips (exit code 77) where haproxy or wrk is not installed.
#   tests/e2e/load_balancing_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: load_balancing_test.sh BUILD_DIR}" && pwd)
for tool in haproxy wrk; do
  command -v "$tool" > /dev/null || { echo "load_balancing_test: SKIP: $tool is not installed (scripts/install-deps.sh installs it)"; exit 77; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_lb_test.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "load_balancing_test: failed, kept $work" >&2; fi' EXIT
dtrain=$build/launch/dtrain

make_blobs "$dtrain" "$work"
DTRAIN_DEVICE=cpu "$dtrain" train --config "$src/configs/fmnist-mlp.ini" --data.train="$work/train.h5" \
  --data.test="$work/test.h5" --model.hidden=16 --train.batch_size=16 --train.max_steps=40 --log.progress=lines \
  --log.dir="$work/run" > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
"$dtrain" export --checkpoint "$(ls -1 "$work"/run/ckpt/step-*.h5 | tail -n 1)" --repo "$work/models" --name blobs \
  > "$work/export.log" 2>&1 || { cat "$work/export.log"; exit 1; }
values=$(awk 'BEGIN { for (i = 0; i < 16; i++) printf "%s%.2f", (i ? "," : ""), (i % 4 == 1 ? 2 : 0) }')
echo "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\",\"data\":[$values]}]}" > "$work/body.json"
# Ports: two runs of ctest on one machine must not collide, nor with the other tests' servers,
# and all stay below Linux's ephemeral range (32768-60999): a port there can be taken by any
# client connection of a test running beside this one (haproxy then cannot bind: seen once in CI).
base=$((20000 + ($$ % 1200) * 10))
LB_PORT=$base BASE_PORT=$((base + 1)) DTRAIN_SERVE="$build/serve/dtrain-serve" \
  bash "$src/examples/load-balancing/run.sh" "$work/models" blobs "$work/body.json" 9
