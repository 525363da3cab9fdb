#!/usr/bin/env bash
# dtrain against PyTorch eager on one GPU, same models (the registry's mlp and cnn), shapes
# (batch 256 of 1x28x28) and plain SGD steps, in the same run: bench_core --device cuda:0 and
# PyTorch's reference script (../shared/bench/pytorch_reference.py, or shared/bench/ in the tree
# the device machine receives). Writes bench-results/gpu.json (JSON lines, both sides), a table,
# and bench-results/gpu.png when gnuplot is there. Without a GPU it says why and stops (exit 0):
# a dry run of the commands, nothing measured.
#   scripts/bench-gpu.sh [BUILD_DIR=build] [REPS=50]
set -euo pipefail
build=${1:-build}
reps=${2:-50}
out=bench-results
mkdir -p "$out"
json=$out/gpu.json
rm -f "$json"
bench="$build/bench/bench_core"
[ -x "$bench" ] || { echo "bench-gpu: no $bench (build the bench_core target first)" >&2; exit 1; }

gpus=$("$build/launch/dtrain" info | sed -n 's/^gpus: *\([0-9]*\) visible.*/\1/p')
if [ "${gpus:-0}" = 0 ]; then
  echo "bench-gpu: no GPU here ($("$build/launch/dtrain" info | sed -n 's/^gpus: *//p')): dry run only"
  "$bench" --help > /dev/null && echo "bench-gpu: $bench --device cuda:0 would run; PyTorch side: $(command -v python3 || echo 'no python3')"
  exit 0
fi

for precision in f32 bf16; do
  "$bench" --device cuda:0 --precision "$precision" --reps "$reps" --json "$json.dtrain"
  sed 's/^{/{"impl":"dtrain",/' "$json.dtrain" >> "$json"
done
rm -f "$json.dtrain"
ref=""
for candidate in ../shared/bench/pytorch_reference.py shared/bench/pytorch_reference.py; do
  [ -f "$candidate" ] && ref=$candidate && break
done
if [ -n "$ref" ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
  python3 "$ref" cuda | grep '^{' | sed 's/^{/{"impl":"pytorch",/' >> "$json"
else
  echo "bench-gpu: no PyTorch with CUDA (or no pytorch_reference.py): dtrain's figures only"
fi

# model -> samples/s per implementation; the bf16 runs (dtrain's train.precision=bf16, PyTorch's autocast) are rows of their own
echo
{
printf '%-10s %14s %14s %8s\n' model dtrain pytorch ratio
awk '
  /"impl":"dtrain"/ && /"train_step"/ { match($0, /"model":"[a-z]*"/); m = substr($0, RSTART + 9, RLENGTH - 10)
    if ($0 ~ /"precision":"bf16"/) m = m "-bf16"
    match($0, /"samples_per_s":[0-9.]*/); d[m] = substr($0, RSTART + 16, RLENGTH - 16) }
  /"impl":"pytorch"/ && /"samples_per_s"/ { match($0, /"model": "[a-z0-9]*"/); m = substr($0, RSTART + 10, RLENGTH - 11)
    if ($0 ~ /"bf16": true/) m = m "-bf16"
    match($0, /"samples_per_s": [0-9.]*/); p[m] = substr($0, RSTART + 17, RLENGTH - 17) }
  END { for (m in p) printf "%-10s %14s %14.0f %8s\n", m, (m in d) ? d[m] : "-", p[m], (m in d) ? sprintf("%.2f", d[m] / p[m]) : "-" }
' "$json" | sort
} | tee "$out/gpu.dat"
if command -v gnuplot > /dev/null; then
  gnuplot <<GP
set terminal pngcairo size 800,500
set output "$out/gpu.png"
set title "dtrain vs PyTorch eager, one GPU, batch 256 (samples/s)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
plot "< tail -n +2 $out/gpu.dat | sed 's/ - / 0 /g'" u 2:xtic(1) t "dtrain", "" u 3 t "PyTorch"
GP
fi
echo "bench-gpu: wrote $json${out:+ and $out/gpu.dat}"
