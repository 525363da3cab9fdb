#!/usr/bin/env bash
# Runs bench_ckpt (checkpoint write/read vs dd of the same bytes on the same disk) and writes
# bench-results/ckpt.json (JSON lines) plus bench-results/ckpt.png (MB/s bars; needs gnuplot).
# Builds nothing: build the bench_ckpt target first.
#   scripts/bench-ckpt.sh [BUILD_DIR=build] [REPS=5] [DIR=next to the bench binary]
set -euo pipefail
build=${1:-build}
reps=${2:-5}
dir=${3:-}
out=bench-results
mkdir -p "$out"
rm -f "$out/ckpt.json"
"$build/bench/bench_ckpt" --reps "$reps" --json "$out/ckpt.json" ${dir:+--dir "$dir"}
if ! command -v gnuplot >/dev/null; then
  echo "bench-ckpt: gnuplot not found (scripts/install-deps.sh installs it); skipping $out/ckpt.png"
  exit 0
fi
grep '"bench":"ckpt_summary"' "$out/ckpt.json" |
  sed -E 's/.*"bytes":([0-9]+).*"write_mb_per_s":([0-9.]+).*"dd_write_mb_per_s":([0-9.]+).*"write_over_dd":([0-9.]+).*"read_mb_per_s":([0-9.]+).*"dd_read_mb_per_s":([0-9.]+).*"read_over_dd":([0-9.]+).*/write \2 \3 \4 \1\nread \5 \6 \7 \1/' \
    >"$out/ckpt.dat"
mb=$(awk 'NR == 1 { printf "%.0f", $5 / 1e6 }' "$out/ckpt.dat")
gnuplot <<GP
set terminal pngcairo size 800,500
set output "$out/ckpt.png"
set title "checkpoint vs dd, same ${mb} MB, same disk (median of ${reps}; labels: ckpt/dd)"
set ylabel "MB/s (10^6 bytes)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set key top left
plot "$out/ckpt.dat" u 2:xtic(1) t "dtrain write/load\\\\_checkpoint", "" u 3 t "dd (conv=fsync for writes)", \
     "" u (\$0 - 0.15):2:(sprintf("%.2fx", \$4)) w labels offset 0,1 notitle
GP
echo "bench-ckpt: wrote $out/ckpt.json and $out/ckpt.png"
