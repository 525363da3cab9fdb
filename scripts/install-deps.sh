#!/usr/bin/env bash
# Installs every Debian package dtrain's build, tests and quickstart need. Idempotent; apt-get only.
# CUDA, cuBLAS and NCCL are not installed here: they come from the CUDA Toolkit at /usr/local/cuda
# when present (configure then builds the GPU code, see DTRAIN_CUDA in README.md).
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git
  openmpi-bin libopenmpi-dev          # MPI backend and launcher
  libhdf5-dev hdf5-tools              # datasets and checkpoints (C API)
  libboost-program-options-dev        # config: INI + CLI
  libopenblas-dev                     # CPU GEMM (cblas)
  libgtest-dev googletest             # tests
  zlib1g-dev                          # gzip'd IDX reader
  libxxhash-dev                       # XXH3 checksums of checkpoint datasets (header only)
  libspdlog-dev libfmt-dev            # logging
  libonnx-dev libprotobuf-dev         # ONNX export (export/) and engine (inference/)
  libcpp-httplib-dev                  # dtrain-serve's HTTP server (and the serve tests' client)
  nlohmann-json3-dev                  # dtrain-serve's KServe V2 JSON requests and responses
  clang-format                        # ctest format_check (scripts/check-format.sh: the tree's layout)
  gnuplot-nox bc                      # scripts/bench-comm.sh plots; tests/comm/expect_failure.sh timing
  wrk                                 # load generator: scripts/bench-serve.sh, examples/load-balancing
  haproxy                             # examples/load-balancing and its e2e test (load_balancing_e2e)
  curl                                # the quickstart's query, the custom-model e2e test
  dataset-fashion-mnist               # scripts/get-data.sh: Fashion-MNIST IDX files
)
# Node.js and npm run the onnxruntime peer check (label e2e). A machine that already has them keeps
# its own: NodeSource's nodejs bundles npm and conflicts with Debian's npm package.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
