#!/usr/bin/env bash
# Runs bench_comm (raw MPI_Allreduce vs ParamSync busbw, with and without collective fingerprints;
# 200 tensors bucketed vs one all-reduce each; exposed communication of cnn- and gpt-shaped steps)
# and writes bench-results/comm.jsonl plus bench-results/comm.png (needs gnuplot).
#   scripts/bench-comm.sh [BUILD_DIR=build] [MAX_MIB=256]
#       one host: mpiexec -n 2 and -n 4 over shared memory
#   scripts/bench-comm.sh [BUILD_DIR=build] [MAX_MIB=16] --netns [--rates 1gbit,10gbit] [--nodes 2,4] [--delay 50us]
#       emulated nodes (scripts/netns-cluster.sh, needs root): for each rate and node count, one rank
#       per node over TCP; each JSON line carries "label": "netns RATE xN nodes"
set -euo pipefail
build=build max_mib="" netns=no rates=1gbit,10gbit nodes=2,4 delay=""
positional=()
while [ $# -gt 0 ]; do
  case $1 in
    --netns) netns=yes; shift ;;
    --rates) rates=${2:?--rates needs a value}; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --delay) delay=${2:?--delay needs a value}; shift 2 ;;
    -*) echo "bench-comm: unknown option '$1' (expected --netns, --rates, --nodes, --delay)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && build=${positional[0]}
[ ${#positional[@]} -ge 2 ] && max_mib=${positional[1]}
[ ${#positional[@]} -le 2 ] || { echo "bench-comm: unexpected argument '${positional[2]}'" >&2; exit 2; }
bench=$(readlink -f "$build/bench/bench_comm")
[ -x "$bench" ] || { echo "bench-comm: $build/bench/bench_comm not found (build first)" >&2; exit 1; }
out=bench-results
mkdir -p "$out"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi  # Open MPI refuses root otherwise
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1

if [ "$netns" = yes ]; then
  json=$out/comm-netns.jsonl
  cluster=$(dirname "$(readlink -f "$0")")/netns-cluster.sh
  rm -f "$json"
  trap '"$cluster" down' EXIT
  for rate in ${rates//,/ }; do
    for n in ${nodes//,/ }; do
      "$cluster" up "$n" --rate "$rate" ${delay:+--delay "$delay"}
      label="netns $rate x$n nodes"
      echo "== $label"
      "$cluster" mpirun -n "$n" --map-by node -x OPENBLAS_NUM_THREADS "$bench" --max-mib "${max_mib:-16}" \
        --json "$(readlink -f "$json")" --label "$label"
    done
  done
  echo "bench-comm: wrote $json"
  exit 0
fi

rm -f "$out/comm.jsonl"
for n in 2 4; do
  mpiexec -n "$n" --oversubscribe "$bench" --max-mib "${max_mib:-256}" --json "$out/comm.jsonl"
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
