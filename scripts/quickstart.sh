#!/usr/bin/env bash
# The README's quickstart: install dependencies, build, and run the smallest working demo.
# Grows with the project: data -> 2-rank training -> export -> serve -> query (export and serve: not yet).
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
