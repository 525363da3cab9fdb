#!/usr/bin/env bash
# The README's quickstart: install dependencies, build, and run the smallest working demo.
# Grows with the project: data -> 2-rank training -> export -> serve -> query.
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
echo "== CPU training steps (mlp and cnn, batch 256): step time vs the same GEMMs alone"
build/bench/bench_core --reps 3 --threads "$(nproc)"
