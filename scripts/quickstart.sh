#!/usr/bin/env bash
# The README's quickstart: install dependencies, build, and run the smallest working demo.
# Grows with the project: data -> 2-rank training -> export -> serve -> query (serve: not yet).
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
echo "== 2-rank data-parallel training of the mlp (configs/fmnist-mlp.ini, about 2 minutes on 2 cores)"
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
