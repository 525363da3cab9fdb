#!/usr/bin/env bash
# The README's quickstart: install dependencies, build, and run the smallest working demo.
# data -> 2-rank training -> export -> serve -> one query with curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
echo "== dtrain info"
build/launch/dtrain info
echo "== Fashion-MNIST as dtrain datasets (data/fmnist-train.h5, data/fmnist-test.h5)"
bash scripts/get-data.sh
build/launch/dtrain data info data/fmnist-test.h5
echo "== 2-rank data-parallel training of the mlp (configs/fmnist-mlp.ini, 40-80 s on 2 cores)"
mpirun_flags=(-np 2)
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # Open MPI refuses root without these
fi
if [ "$(nproc)" -lt 2 ]; then mpirun_flags+=(--oversubscribe); fi
mpirun "${mpirun_flags[@]}" build/launch/dtrain train --config configs/fmnist-mlp.ini --log.dir=runs/quickstart-mlp
echo "== test accuracy per evaluation: runs/quickstart-mlp/metrics.jsonl; checkpoints: runs/quickstart-mlp/ckpt/"
ckpt=$(ls -1 runs/quickstart-mlp/ckpt/step-*.h5 | tail -n 1)
echo "== export $ckpt to the ONNX model repository models/ (f32, then int8)"
build/launch/dtrain export --checkpoint "$ckpt" --repo models --name fmnist-mlp
build/launch/dtrain export --checkpoint "$ckpt" --repo models --name fmnist-mlp --quantize int8
newest=$(ls -1 models/fmnist-mlp | grep -E '^[0-9]+$' | sort -n | tail -n 1)
echo "== the exported int8 model (models/fmnist-mlp/$newest/model.onnx) on the test set, by dtrain's ONNX engine"
build/launch/dtrain eval --model "models/fmnist-mlp/$newest/model.onnx" --data data/fmnist-test.h5
echo "== serve models/ with dtrain-serve (KServe V2) and ask it about one test image"
port="${DTRAIN_SERVE_PORT:-8000}"
# shellcheck source=scripts/serve-lib.sh
source scripts/serve-lib.sh
start_serve models "$port" runs/quickstart-serve.log
fm=/usr/share/datasets/fashion-mnist
# The first test image (raw pixels, as the exported model takes them) and its label, from the IDX files.
pixels=$(set +o pipefail; zcat "$fm/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784 | od -An -tu1 -v | tr -s ' \n' ' ')
label=$(set +o pipefail; zcat "$fm/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c 1 | od -An -tu1 | tr -d ' \n')
echo "$pixels" | awk '{ for (i = 1; i <= NF; ++i) { printf "%s", ($i > 170 ? "#" : $i > 85 ? "+" : $i > 0 ? "." : " "); if (i % 28 == 0) printf "\n" } }'
data=$(echo "$pixels" | sed 's/^ *//; s/ *$//; s/ /,/g')
echo "== curl -X POST http://127.0.0.1:$port/v2/models/fmnist-mlp/infer (true class: $label)"
curl -sf -X POST "http://127.0.0.1:$port/v2/models/fmnist-mlp/infer" -H 'Content-Type: application/json' \
  -d "{\"id\":\"quickstart-1\",\"inputs\":[{\"name\":\"input\",\"shape\":[1,28,28],\"datatype\":\"UINT8\",\"data\":[$data]}],\"outputs\":[{\"name\":\"class\"}]}"
echo
stop_serve
echo "== dtrain-serve stopped (SIGTERM); its log: runs/quickstart-serve.log; docs/serve.md for the endpoints"
