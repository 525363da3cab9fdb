#!/usr/bin/env bash
# The onnxruntime peer check (ctest label e2e): onnx_peer_dump exports mlp and cnn (f32, int8)
# and records dtrain's engine outputs; onnx_peer_check.js runs onnxruntime-node on the same inputs
# and compares. With --gpt in place of the images (ctest onnx_peer_check_gpt): a tiny gpt's
# model.onnx and model_with_past.onnx, logits and greedy continuations. Exits 77 (ctest
# SKIP_RETURN_CODE) with the reason when node or onnxruntime-node is missing; onnxruntime-node is
# a test-only install:
#   npm install --prefix NODE_PREFIX --ignore-scripts onnxruntime-node@1.30.0
# usage: onnx_peer_check.sh ONNX_PEER_DUMP NODE_PREFIX WORK_DIR [IDX_IMAGES | --gpt]
set -euo pipefail
dump="$1" node_prefix="$2" work="$3" images="${4:-}"
if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node not found (scripts/install-deps.sh installs nodejs)"
  exit 77
fi
if [ ! -f "$node_prefix/node_modules/onnxruntime-node/package.json" ]; then
  echo "SKIPPED: onnxruntime-node is not installed under $node_prefix" \
       "(npm install --prefix $node_prefix --ignore-scripts onnxruntime-node@1.30.0)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
"$dump" "$work" "$images"
node "$(dirname "$0")/onnx_peer_check.js" "$node_prefix" "$work"
