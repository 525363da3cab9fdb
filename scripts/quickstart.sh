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
echo "== CPU training steps (mlp and cnn, batch 256) with step time vs GEMM time"
build/bench/bench_core --quick --threads "$(nproc)"
