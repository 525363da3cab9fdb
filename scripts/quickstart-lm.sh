#!/usr/bin/env bash
# The README's language-model quickstart: install dependencies, build, then
# the King James Bible as byte tokens -> a gpt trained on 2 ranks for a few minutes -> generated
# text -> export (model.onnx + model_with_past.onnx) -> dtrain-serve -> one streamed generation.
#   LM_STEPS=600 (default): about 3 minutes on 2 cores; configs/kjv-gpt.ini's 3000 steps reach
#   its learning target (docs/language-model.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
echo "== the King James Bible as byte tokens (data/kjv-train.h5, and the last 5 % as data/kjv-val.h5)"
bash scripts/get-text.sh
steps="${LM_STEPS:-600}"
echo "== 2-rank data-parallel training of the gpt (configs/kjv-gpt.ini, $steps steps)"
mpirun_flags=(-np 2)
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # Open MPI refuses root without these
fi
if [ "$(nproc)" -lt 2 ]; then mpirun_flags+=(--oversubscribe); fi
mpirun "${mpirun_flags[@]}" build/launch/dtrain train --config configs/kjv-gpt.ini --train.max_steps="$steps" \
  --train.eval_every="$steps" --checkpoint.every=0 --log.dir=runs/quickstart-gpt
ckpt=$(ls -1 runs/quickstart-gpt/ckpt/step-*.h5 | tail -n 1)
echo "== dtrain generate --checkpoint $ckpt --prompt 'And God said'"
build/launch/dtrain generate --checkpoint "$ckpt" --prompt "And God said" --max-tokens 200 --temperature 0.8 --seed 1
echo "== export $ckpt to the ONNX model repository models/ (kjv-gpt)"
build/launch/dtrain export --checkpoint "$ckpt" --repo models --name kjv-gpt
echo "== serve models/ with dtrain-serve and stream one generation (Server-Sent Events, one per token)"
port="${DTRAIN_SERVE_PORT:-8000}"
# shellcheck source=scripts/serve-lib.sh
source scripts/serve-lib.sh
start_serve models "$port" runs/quickstart-lm-serve.log
echo "== curl -N -X POST http://127.0.0.1:$port/v2/models/kjv-gpt/generate_stream"
curl -sfN -X POST "http://127.0.0.1:$port/v2/models/kjv-gpt/generate_stream" -H 'Content-Type: application/json' \
  -d '{"text_input": "In the beginning", "parameters": {"max_tokens": 24, "temperature": 0.8, "top_k": 40, "seed": 1}}'
echo "== curl -X POST http://127.0.0.1:$port/v2/models/kjv-gpt/generate"
curl -sf -X POST "http://127.0.0.1:$port/v2/models/kjv-gpt/generate" -H 'Content-Type: application/json' \
  -d '{"text_input": "In the beginning", "parameters": {"max_tokens": 64, "temperature": 0.8, "top_k": 40, "seed": 1}}'
echo
stop_serve
echo "== dtrain-serve stopped; docs/language-model.md describes the model, the data and the endpoints"
