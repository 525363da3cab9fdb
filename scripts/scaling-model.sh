#!/usr/bin/env bash
# The alpha-beta model of a data-parallel step (docs/scaling.md), fitted to scripts/bench-comm.sh
# --netns measurements (2 nodes) and checked against the 4-node ones:
#   ring all-reduce of S bytes on N nodes: t(N, S) = 2(N-1) alpha + 2(N-1)/N * S / B
#   a step's communication: the sum over its buckets (k buckets of P parameters in all):
#     T_comm = k * 2(N-1) alpha + 2(N-1)/N * 4P / B
#   its step time: compute C plus what backward cannot hide: the last bucket, or all of T_comm past
#     the backward (2/3 of C): step = C + max(t_last, T_comm - 2C/3)
# alpha and B are fitted per emulated link rate to the 2-node raw MPI_Allreduce rows (least squares
# on relative error), the 4-node rows (raw MPI and ParamSync) are predicted, and the step model is
# extrapolated to 8-1024 nodes at 10, 100 and 400 Gbit/s for the mlp, cnn and gpt (compute per step
# measured with bench_core, one thread), with full overlap and with none.
#   scripts/scaling-model.sh [JSONL=bench-results/comm-netns.jsonl] [BUILD_DIR=build]
# Writes bench-results/scaling.txt (the tables docs/scaling.md quotes) and scaling.png (gnuplot).
set -euo pipefail
jsonl=${1:-bench-results/comm-netns.jsonl}
build=${2:-build}
out=bench-results
[ -f "$jsonl" ] || { echo "scaling-model: $jsonl not found (run scripts/bench-comm.sh BUILD 16 --netns)" >&2; exit 1; }
mkdir -p "$out"

# Compute per step on one rank, one thread (seconds), at the configs' batch sizes: bench_core's
# step (forward, backward, optimizer) at its own batch, scaled to the config's per-rank batch.
compute_s() {
  local model=$1 per_rank_batch=$2 line batch step
  line=$(OPENBLAS_NUM_THREADS=1 "$build/bench/bench_core" --threads 1 --only "$model" 2>/dev/null |
    grep "\"bench\":\"train_step\",\"model\":\"$model\"" | head -1)
  batch=$(sed -E 's/.*"batch":([0-9]+).*/\1/' <<<"$line")
  step=$(sed -E 's/.*"step_ms":([0-9.e+-]+).*/\1/' <<<"$line")
  awk -v s="$step" -v b="$batch" -v n="$per_rank_batch" 'BEGIN { printf "%.6f\n", s / 1000 * n / b }'
}

field() { sed -E "s/.*\"$1\":\"?([^,\"}]*)\"?.*/\\1/"; }

# Fit: alpha and B per link rate from the 2-node raw MPI_Allreduce rows (least squares on relative
# error). Check: the model's prediction for the 4-node rows (raw MPI and ParamSync), which the fit
# never saw.
rows() {  # rows RATE NODES: "bytes mpi_time_s dtrain_time_s" of the allreduce lines of that run
  grep '"bench":"allreduce"' "$jsonl" | grep "\"label\":\"netns $1 x$2 nodes\"" |
    sed -E 's/.*"bytes":([0-9]+).*"mpi_time_s":([0-9.e+-]+).*"dtrain_time_s":([0-9.e+-]+),.*/\1 \2 \3/'
}
rates=$(grep '"bench":"allreduce"' "$jsonl" | sed -E 's/.*"label":"netns ([0-9a-z]+) x.*/\1/' | sort -u)
{
  echo "# fitted on 2 nodes (raw MPI_Allreduce): link rate alpha_us B_GBps"
  for rate in $rates; do
    rows "$rate" 2 | awk -v rate="$rate" '{
        n = 2; s = $1; t = $2
        x1 = 2 * (n - 1) / t; x2 = 2 * (n - 1) / n * s / t
        a11 += x1 * x1; a12 += x1 * x2; a22 += x2 * x2; b1 += x1; b2 += x2
      } END {
        det = a11 * a22 - a12 * a12
        alpha = (b1 * a22 - b2 * a12) / det; beta = (a11 * b2 - a12 * b1) / det
        printf "link %s %.2f %.4f\n", rate, alpha * 1e6, 1 / beta / 1e9
      }'
  done
} >"$out/scaling.fit"
cat "$out/scaling.fit"
{
  echo "# 4-node prediction vs measurement: check rate bytes measured_mpi_us model_us ratio measured_paramsync_us ratio"
  for rate in $rates; do
    read -r alpha_us gbps < <(awk -v r="$rate" '$1 == "link" && $2 == r {print $3, $4}' "$out/scaling.fit")
    rows "$rate" 4 | awk -v r="$rate" -v a="$alpha_us" -v g="$gbps" '{
      n = 4; model = 2 * (n - 1) * a * 1e-6 + 2 * (n - 1) / n * $1 / (g * 1e9)
      printf "check %s %d %.1f %.1f %.2f %.1f %.2f\n", r, $1, $2 * 1e6, model * 1e6, model / $2, $3 * 1e6, model / $3
    }'
  done
} >"$out/scaling.check"
cat "$out/scaling.check"
awk '$1 == "check" && $3 >= 65536 { n++; if ($6 >= 0.8 && $6 <= 1.2) ok++; if ($8 >= 0.8 && $8 <= 1.2) okp++ }
  END { printf "4-node rows >= 64 KiB within 20 %%: raw MPI %d of %d, ParamSync %d of %d\n", ok, n, okp, n }' \
  "$out/scaling.check" | tee -a "$out/scaling.check"

# Extrapolation: data-parallel efficiency C / step at 8-1024 nodes, per model and link, f32 and bf16
# wire. Latency: the fastest fitted link's alpha (an emulated veth hop; real fabrics are lower).
alpha_us=$(awk '$1 == "link" {print $3}' "$out/scaling.fit" | sort -g | head -1)
c_mlp=$(compute_s mlp 64) c_cnn=$(compute_s cnn 64) c_gpt=$(compute_s gpt 16)
{
  echo "# extrapolation (alpha $alpha_us us, compute per step mlp $c_mlp s, cnn $c_cnn s, gpt $c_gpt s):"
  echo "# model gbps wire nodes step_ms efficiency(overlapped) efficiency(no overlap)"
  # Parameters of bench_core's models: the registry's default mlp (784-256-128-10), the fmnist cnn,
  # the kjv gpt (4 layers, 128 wide, ctx 128, bytes, tied head).
  for spec in "mlp 235146 $c_mlp" "cnn 421642 $c_cnn" "gpt 842496 $c_gpt"; do
    read -r model params compute <<<"$spec"
    for gbps in 10 100 400; do
      for wire in 4 2; do
        awk -v m="$model" -v p="$params" -v c="$compute" -v g="$gbps" -v w="$wire" -v a="$alpha_us" 'BEGIN {
          bytes = w * p; first = 1048576; cap = 25 * 1048576
          k = bytes <= first ? 1 : 1 + int((bytes - first + cap - 1) / cap)
          last = bytes <= first ? bytes : bytes - first - (k - 2) * cap
          for (n = 8; n <= 1024; n *= 2) {
            t_last = 2 * (n - 1) * a * 1e-6 + 2 * (n - 1) / n * last / (g / 8 * 1e9)
            t_all = k * 2 * (n - 1) * a * 1e-6 + 2 * (n - 1) / n * bytes / (g / 8 * 1e9)
            exposed = t_all - 2 * c / 3; if (exposed < t_last) exposed = t_last
            printf "scale %s %d %s %d %.3f %.3f %.3f\n", m, g, w == 4 ? "f32" : "bf16", n, (c + exposed) * 1e3,
              c / (c + exposed), c / (c + t_all)
          }
        }'
      done
    done
  done
} >"$out/scaling.txt"
cat "$out/scaling.fit" "$out/scaling.check" >>"$out/scaling.txt"
grep '^scale' "$out/scaling.txt" |
  awk '$7 < 0.5 && !seen[$2" "$3" "$4]++ {print "stops scaling (efficiency < 0.5, overlapped):", $2, $3 " Gbit/s", $4, "from", $5, "nodes"}' |
  tee -a "$out/scaling.txt"

if command -v gnuplot >/dev/null; then
  for m in mlp cnn gpt; do
    for g in 10 100 400; do
      awk -v m="$m" -v g="$g" '$1 == "scale" && $2 == m && $3 == g && $4 == "f32" {print $5, $7}' "$out/scaling.txt" \
        >"$out/scaling_${m}_$g.dat"
    done
  done
  gnuplot <<GP
set terminal pngcairo size 1000,560
set output "$out/scaling.png"
set logscale x 2
set xlabel "nodes (one rank each, fixed batch per rank)"
set ylabel "data-parallel efficiency (compute / step)"
set yrange [0:1.05]
set title "alpha-beta model, f32 gradients, ring all-reduce, alpha = ${alpha_us} us"
set key outside right
plot for [m in "mlp cnn gpt"] for [g in "10 100 400"] "$out/scaling_".m."_".g.".dat" u 1:2 w lp t m." ".g." Gbit/s"
GP
  echo "scaling-model: wrote $out/scaling.txt and $out/scaling.png"
else
  echo "scaling-model: wrote $out/scaling.txt (gnuplot not found: no plot)"
fi
