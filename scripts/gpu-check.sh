#!/usr/bin/env bash
# The GPU check: one command for the GPU machine (../shared/device/README.md: build with CUDA here,
# pack, carry .device, `. .device/env.sh`), every log to $OUT, in a few minutes:
#   1. environment: nvidia-smi, dtrain info, ldd of the binaries (nothing "not found")
#   2. every gpu-labelled test with DTRAIN_REQUIRE_GPU=1 (a skip for want of a GPU fails)
#   3. mlp and cnn, 120 steps each on CPU and GPU from the same seed on the same synthetic data:
#      the loss curves side by side and their largest relative gap
#   4. 2 ranks on the one GPU (comm.backend=auto must pick mpi)
#   5. an export evaluated by the engine on CPU and on CUDA: the same accuracy
#   6. scripts/bench-gpu.sh (dtrain vs PyTorch)
# Without a GPU it is a dry run: steps 2-6 run on the CPU as far as they can and say what was not
# checked. Exits non-zero when a step fails.
#   OUT=/some/dir scripts/gpu-check.sh [BUILD_DIR=build-gpu]
set -uo pipefail
build=${1:-build-gpu}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
dtrain="$build/launch/dtrain"
failed=()
section() { echo; echo "== [$(date +%T)] $*" | tee -a "$OUT/summary.txt"; }
result() {  # result NAME STATUS(0=ok) [note]
  local status=PASS
  [ "$2" = 0 ] || { status=FAIL; failed+=("$1"); }
  echo "$status $1${3:+: $3}" | tee -a "$OUT/summary.txt"
}
: > "$OUT/summary.txt"
[ -x "$dtrain" ] || { echo "gpu-check: no $dtrain (build with -DDTRAIN_CUDA=ON first)" >&2; exit 2; }
gpus=$("$dtrain" info | sed -n 's/^gpus: *\([0-9]*\) visible.*/\1/p')
gpu=${gpus:-0}
[ "$gpu" -gt 0 ] || echo "gpu-check: no GPU ($("$dtrain" info | sed -n 's/^gpus: *//p')): dry run on the CPU" |
  tee -a "$OUT/summary.txt"

section "1. environment"
{ nvidia-smi 2>&1 || echo "(no nvidia-smi)"; "$dtrain" info; } > "$OUT/environment.txt" 2>&1
missing=$(for f in "$dtrain" "$build"/serve/dtrain-serve "$build"/bench/bench_core; do ldd "$f"; done 2>&1 |
          grep 'not found' | sort -u)
echo "$missing" >> "$OUT/environment.txt"
result "binaries find their libraries" "$([ -z "$missing" ] && echo 0 || echo 1)" "$missing"

section "2. gpu tests"
if [ "$gpu" -gt 0 ]; then
  (cd "$build" && DTRAIN_REQUIRE_GPU=1 ctest -L gpu --output-on-failure) > "$OUT/gpu-tests.txt" 2>&1
  result "ctest -L gpu (DTRAIN_REQUIRE_GPU=1)" $?
else
  (cd "$build" && ctest -L gpu) > "$OUT/gpu-tests.txt" 2>&1
  result "ctest -L gpu (dry run: they skip, with their reason)" $?
fi

section "3. CPU vs GPU loss curves"
data=$OUT/data
mkdir -p "$data"
for split in train:2048:1 test:512:2; do  # 10 classes of 28x28 "images": a bright square per class
  IFS=: read -r name n seed <<< "$split"
  awk -v n="$n" -v seed="$seed" 'BEGIN { srand(seed); for (i = 0; i < n; i++) { c = i % 10; line = c
    for (p = 0; p < 784; p++) { r = int(p / 28); q = p % 28; on = (r >= 2 * c && r < 2 * c + 8 && q >= 4 && q < 20)
      line = line "," sprintf("%.2f", on ? 0.6 + 0.4 * rand() : 0.25 * rand()) } print line } }' > "$data/$name.csv"
  "$dtrain" data convert --from csv --header no --num-classes 10 --input "$data/$name.csv" --out "$data/$name.h5" \
    > /dev/null
done
common=(--data.train="$data/train.h5" --data.test="$data/test.h5" --train.max_steps=120 --train.log_every=10
        --train.batch_size=64 --optim.lr=0.01 --log.progress=none --model.input_shape=1,28,28)
curves_ok=0
for model in mlp cnn; do
  devices=(cpu)
  [ "$gpu" -gt 0 ] && devices+=(cuda)
  for device in "${devices[@]}"; do
    rm -rf "$OUT/$model-$device"
    "$dtrain" train "${common[@]}" --model.type=$model --train.device=$device --log.dir="$OUT/$model-$device" \
      > "$OUT/$model-$device.log" 2>&1 || { curves_ok=1; echo "train $model on $device failed"; }
    grep -o '"step":[0-9]*,.*"loss":[0-9.e+-]*' "$OUT/$model-$device/metrics.jsonl" 2> /dev/null |
      sed 's/"step":\([0-9]*\),.*"loss":\(.*\)/\1 \2/' > "$OUT/$model-$device.loss"
  done
  if [ "$gpu" -gt 0 ]; then
    gap=$(join "$OUT/$model-cpu.loss" "$OUT/$model-cuda.loss" | tee "$OUT/$model-curves.txt" |
          awk '{ d = ($2 - $3) / ($2 > 0 ? $2 : 1); if (d < 0) d = -d; if (d > m) m = d } END { printf "%.4f", m }')
    echo "$model: largest relative loss gap CPU vs GPU over 120 steps: $gap" | tee -a "$OUT/summary.txt"
    awk -v g="$gap" 'BEGIN { exit !(g < 0.05) }' || curves_ok=1
  fi
done
result "mlp and cnn train on $([ "$gpu" -gt 0 ] && echo 'CPU and GPU, curves within 5 %' || echo 'the CPU (dry run)')" $curves_ok

section "4. 2 ranks on one GPU"
if [ "$gpu" -gt 0 ]; then
  rm -rf "$OUT/two-ranks"
  mpiexec -n 2 "$dtrain" train "${common[@]}" --model.type=mlp --train.device=cuda --train.max_steps=20 \
    --log.dir="$OUT/two-ranks" > "$OUT/two-ranks.log" 2>&1
  rc=$?
  grep -q "backend mpi" "$OUT/two-ranks.log" || rc=1
  result "mpiexec -n 2 on one GPU (auto picks mpi)" $rc
else
  echo "not checked: needs a GPU" | tee -a "$OUT/summary.txt"
fi

section "5. export, evaluated on CPU and CUDA"
ckpt=$(ls -1 "$OUT"/mlp-cpu/ckpt/step-*.h5 2> /dev/null | tail -n 1)
rm -rf "$OUT/models"
if [ -n "$ckpt" ] && "$dtrain" export --checkpoint "$ckpt" --repo "$OUT/models" --name mlp --data none \
     > "$OUT/export.log" 2>&1; then
  cpu_acc=$("$dtrain" eval --model "$OUT/models/mlp/1/model.onnx" --data "$data/test.h5" | awk '{print $2}')
  if [ "$gpu" -gt 0 ]; then
    gpu_acc=$("$dtrain" eval --model "$OUT/models/mlp/1/model.onnx" --data "$data/test.h5" --device cuda:0 |
              awk '{print $2}')
    echo "engine accuracy: cpu $cpu_acc, cuda $gpu_acc" | tee -a "$OUT/summary.txt"
    result "the engine on CPU and CUDA agree" "$([ "$cpu_acc" = "$gpu_acc" ] && echo 0 || echo 1)"
  else
    result "export and CPU evaluation (dry run: accuracy $cpu_acc)" "$([ -n "$cpu_acc" ] && echo 0 || echo 1)"
  fi
else
  result "export" 1 "see $OUT/export.log"
fi

section "6. bench-gpu"
scripts/bench-gpu.sh "$build" > "$OUT/bench-gpu.txt" 2>&1
result "scripts/bench-gpu.sh" $?
cp bench-results/gpu.json bench-results/gpu.dat bench-results/gpu.png "$OUT/" 2> /dev/null || true

echo
cat "$OUT/summary.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-check: ${#failed[@]} failed: ${failed[*]}"
  exit 1
fi
echo "gpu-check: every step passed$([ "$gpu" -gt 0 ] || echo ' (dry run: no GPU)')"
