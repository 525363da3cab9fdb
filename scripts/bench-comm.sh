#!/usr/bin/env bash
# Runs bench_comm with mpiexec -n 2 and -n 4 and writes bench-results/comm.jsonl plus
# bench-results/comm.png (algbw/busbw of raw MPI_Allreduce vs ParamSync; needs gnuplot).
#   scripts/bench-comm.sh [BUILD_DIR=build] [MAX_MIB=256]
set -euo pipefail
build=${1:-build}
max_mib=${2:-256}
out=bench-results
mkdir -p "$out"
rm -f "$out/comm.jsonl"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi  # Open MPI refuses root otherwise
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1
for n in 2 4; do
  mpiexec -n "$n" --oversubscribe "$build/bench/bench_comm" --max-mib "$max_mib" --json "$out/comm.jsonl"
done
if ! command -v gnuplot >/dev/null; then
  echo "bench-comm: gnuplot not found (scripts/install-deps.sh installs it); skipping $out/comm.png"
  exit 0
fi
for n in 2 4; do
  grep '"bench":"allreduce"' "$out/comm.jsonl" | grep "\"ranks\":$n," |
    sed -E 's/.*"bytes":([0-9]+).*"mpi_busbw_gbs":([0-9.e+-]+).*"dtrain_busbw_gbs":([0-9.e+-]+).*/\1 \2 \3/' \
      >"$out/comm_np$n.dat"
done
gnuplot <<GP
set terminal pngcairo size 900,540
set output "$out/comm.png"
set logscale x 2
set xlabel "message size (bytes)"
set ylabel "busbw (GB/s)"
set title "all-reduce busbw: raw MPI_Allreduce vs dtrain ParamSync"
set key top left
plot "$out/comm_np2.dat" u 1:2 w lp t "MPI, 2 ranks", "$out/comm_np2.dat" u 1:3 w lp t "ParamSync, 2 ranks", \
     "$out/comm_np4.dat" u 1:2 w lp t "MPI, 4 ranks", "$out/comm_np4.dat" u 1:3 w lp t "ParamSync, 4 ranks"
GP
echo "bench-comm: wrote $out/comm.jsonl and $out/comm.png"
