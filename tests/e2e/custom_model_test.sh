#!/usr/bin/env bash
# examples/custom-model against an installed dtrain: `cmake --install` this build into a temporary
# prefix, configure the example with find_package(dtrain) from that prefix only, build it, then
# train its resmlp model on a tiny CSV dataset: 1 rank, 2 ranks (mpiexec) stopped and resumed,
# and a bad model option that must name itself. Then export the trained model with the example's
# `export` (f32 and int8), evaluate it, serve it with the installed dtrain-serve and query it, and
# run the exported file with onnxruntime against dtrain's engine (skipped with the reason when node
# or onnxruntime-node is missing, as the onnx_peer_check test does).
#   tests/e2e/custom_model_test.sh BUILD_DIR
# Environment (ctest sets them): MPIEXEC, CMAKE_GENERATOR, CXX, EXAMPLE_CXX_FLAGS (sanitizer builds),
# ORT_NODE_PREFIX (npm prefix holding onnxruntime-node).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
source "$src/tests/e2e/blobs.sh"
build=$(cd "${1:?usage: custom_model_test.sh BUILD_DIR}" && pwd)
mpiexec=${MPIEXEC:-mpiexec}
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_custom_model.XXXXXX")
serve_pid=
trap 'rc=$?; [ -z "$serve_pid" ] || kill -TERM "$serve_pid" 2>/dev/null || true
      if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "custom_model_test: failed, kept $work" >&2; fi' EXIT
fail() { echo "custom_model_test: FAIL: $*" >&2; exit 1; }
phase() { echo "== [${SECONDS}s] $*"; }

phase "install $build into $work/prefix"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"

phase "the package installs public headers only"
for internal in core/layers/layer_util.h core/cuda/check.h comm/backends.h comm/mpi_runtime.h inference/onnx_ops.h \
                optim/kernels.h launch/log_window.h serve/model_store.h; do
  [ ! -e "$work/prefix/include/dtrain/$internal" ] || fail "internal header $internal was installed"
done
for public in core/tensor.h core/config.h core/layers/layers.h launch/commands.h export/onnx_export.h \
              inference/onnx_engine.h serve/server.h; do
  [ -f "$work/prefix/include/dtrain/$public" ] || fail "public header $public was not installed"
done

phase "configure and build examples/custom-model against the installed package"
cmake -S "$src/examples/custom-model" -B "$work/build" ${CMAKE_GENERATOR:+-G "$CMAKE_GENERATOR"} \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" ${CXX:+-DCMAKE_CXX_COMPILER="$CXX"} \
  ${EXAMPLE_CXX_FLAGS:+-DCMAKE_CXX_FLAGS="$EXAMPLE_CXX_FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$EXAMPLE_CXX_FLAGS"} \
  > "$work/configure.log" || { cat "$work/configure.log"; fail "configure"; }
found=$(sed -n 's/^dtrain_DIR:PATH=//p' "$work/build/CMakeCache.txt")
[ "$found" -ef "$work/prefix/lib/cmake/dtrain" ] || fail "find_package(dtrain) found '$found', not the installed prefix"
cmake --build "$work/build" -j2 > "$work/build.log" || { cat "$work/build.log"; fail "build"; }
trainer=$work/build/dtrain-resmlp

phase "a tiny dataset: 4 Gaussian blobs in 16 features, as CSV, through the installed dtrain"
make_blobs "$work/prefix/bin/dtrain" "$work"

common=(train --config "$src/examples/custom-model/resmlp.ini" --data.train="$work/train.h5" --data.test="$work/test.h5"
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

phase "export the resumed run's checkpoint (f32, then int8) with dtrain-resmlp export"
ckpt=$(ls -1 "$work"/two/ckpt/step-*.h5 | tail -n 1)
models=$work/models
"$trainer" export --checkpoint "$ckpt" --repo "$models" --name resmlp --data "$work/test.h5" > "$work/export.log" 2>&1 ||
  { cat "$work/export.log"; fail "export exited non-zero"; }
"$trainer" export --checkpoint "$ckpt" --repo "$models" --name resmlp --quantize int8 --data "$work/test.h5" \
  >> "$work/export.log" 2>&1 || { cat "$work/export.log"; fail "int8 export exited non-zero"; }
cat "$work/export.log"
[ -f "$models/resmlp/1/model.onnx" ] && [ -f "$models/resmlp/2/model.onnx" ] || fail "no versions 1 and 2 in $models/resmlp"
"$trainer" eval --model "$models/resmlp/1/model.onnx" --data "$work/test.h5" > "$work/eval.log" 2>&1 ||
  { cat "$work/eval.log"; fail "eval exited non-zero"; }
cat "$work/eval.log"

phase "onnxruntime runs the exported file as dtrain's engine does"
dump=$build/tests/export/onnx_peer_dump
node_prefix=${ORT_NODE_PREFIX:-$build/node}
if ! command -v node > /dev/null 2>&1 || [ ! -f "$node_prefix/node_modules/onnxruntime-node/package.json" ]; then
  echo "SKIPPED: the onnxruntime comparison needs node and onnxruntime-node under $node_prefix" \
       "(npm install --prefix $node_prefix --ignore-scripts onnxruntime-node@1.30.0)"
else
  for v in 1:none 2:int8; do
    IFS=: read -r version quantize <<< "$v"
    "$dump" "$work/peer$version" --model "$models/resmlp/$version/model.onnx" --data "$work/test.h5" \
      --quantize "$quantize" || fail "onnx_peer_dump on version $version"
    node "$src/tests/export/onnx_peer_check.js" "$node_prefix" "$work/peer$version" || fail "onnxruntime disagrees on version $version"
  done
fi

phase "serve the repository with the installed dtrain-serve and query both versions"
"$work/prefix/bin/dtrain-serve" --repo "$models" --port 0 > "$work/serve.log" 2>&1 &
serve_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/serve.log" | head -n 1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; fail "dtrain-serve exited"; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null || { cat "$work/serve.log"; fail "dtrain-serve not ready"; }
features=$(head -n 1 "$work/test.csv" | cut -d, -f2-)
for version in 1 2; do
  response=$(curl -sf -X POST "http://127.0.0.1:$port/v2/models/resmlp/versions/$version/infer" \
    -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,16],\"datatype\":\"FP32\",\"data\":[$features]}]}") ||
    { cat "$work/serve.log"; fail "infer on version $version failed"; }
  echo "version $version: $response"
  grep -q '"name":"class"' <<< "$response" || fail "no class output from version $version"
done
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "dtrain-serve did not exit 0 on SIGTERM"
serve_pid=

phase "passed"
