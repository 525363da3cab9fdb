#!/usr/bin/env bash
# The README's test command: install dependencies, configure, build, run every ctest.
# GPU tests skip with a reason when no GPU is visible; the CUDA code is still compiled
# when nvcc is found (DTRAIN_CUDA=AUTO).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
cd build && ctest --output-on-failure -j"$(nproc)"
