#!/usr/bin/env bash
# dtrain against PyTorch DDP (CPU, gloo; bench/peer_pytorch.py) on the same models, batch, ranks,
# optimizer and data, in one run: mlp (784-512-256-10, Adam, batch 64 per rank), cnn
# (conv32-pool-conv64-pool-fc128, Adam, batch 64) and gpt (4 layers x 4 heads x 128 wide, ctx 128,
# AdamW with clipping, batch 16 windows of KJV bytes), both launched with mpiexec, alternated for
# ROUNDS rounds (the order flips every round). Each side is timed over --steps (gpt: --gpt-steps)
# steps after --warmup steps, start-up and evaluation excluded: samples/s (tokens/s for gpt).
# Writes bench-results/peer-DATE.jsonl (JSON lines: each run, then a summary per model and layout
# with the median dtrain/PyTorch throughput ratio), a table, and bench-results/peer-DATE.png (needs
# gnuplot). A layout RxT is R ranks of T threads each. Builds nothing.
# --learning STEPS: instead, trains the gpt STEPS steps on both sides (lr 3e-3 peak, 50 warm-up
# steps (half the run when shorter), cosine to 0, 2 ranks x 16 x 128 tokens) and compares the
# validation loss in nats/byte on 640 fixed windows of data/kjv-val.h5 and the wall time:
# bench-results/peer-learning-DATE.jsonl, a table and bench-results/peer-learning-DATE.png.
# Installs python3-torch, python3-numpy and python3-h5py with apt-get when torch is missing
# (a benchmark-only dependency, not in install-deps.sh). Both run with OMP_WAIT_POLICY=PASSIVE
# unless the environment sets it: PyTorch's OpenMP threads spin otherwise, against OpenBLAS's.
# Both use the same OpenBLAS kernels: where dtrain restarts itself with a better OPENBLAS_CORETYPE
# than OpenBLAS picked, PyTorch runs with it too (Debian's torch loads the same libopenblas).
#   scripts/bench-peer.sh [--models mlp,cnn,gpt] [--layouts 2x1,1x2] [--rounds 3] [--warmup 50]
#                         [--steps 200] [--gpt-steps 100] [--learning STEPS] [--build build]
set -euo pipefail
cd "$(dirname "$0")/.."
models=mlp,cnn,gpt layouts=2x1 rounds=3 warmup=50 steps=200 gpt_steps=100 learning=0 build=build
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift 2 ;;
    --layouts) layouts="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --gpt-steps) gpt_steps="$2"; shift 2 ;;
    --learning) learning="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-peer: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$warmup" "$steps" "$gpt_steps" "$learning"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "bench-peer: '$n' is not a whole number" >&2; exit 2; }
done
if [ "$rounds" -lt 1 ] || [ "$warmup" -lt 1 ] || [ "$steps" -lt 1 ] || [ "$gpt_steps" -lt 1 ]; then
  echo "bench-peer: --rounds, --warmup, --steps and --gpt-steps must be at least 1" >&2; exit 2
fi
for m in ${models//,/ }; do
  case "$m" in mlp|cnn|gpt) ;; *) echo "bench-peer: unknown model '$m' (mlp, cnn, gpt)" >&2; exit 2 ;; esac
done
for l in ${layouts//,/ }; do
  [[ "$l" =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "bench-peer: layout '$l' is not RANKSxTHREADS (e.g. 2x1)" >&2; exit 2; }
done
dtrain="$build/launch/dtrain"
[ -x "$dtrain" ] || { echo "bench-peer: no $dtrain (build first, or --build DIR)" >&2; exit 1; }

# PyTorch: the python3 on PATH when it has torch, else Debian's (installed here when missing).
python=python3
if ! "$python" -c 'import torch, numpy' 2> /dev/null; then
  python=/usr/bin/python3
  if ! "$python" -c 'import torch, numpy' 2> /dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo > /dev/null || { echo "bench-peer: installing python3-torch needs root or sudo" >&2; exit 1; }
      SUDO=sudo
    fi
    echo "bench-peer: installing python3-torch, python3-numpy and python3-h5py (Debian's, CPU)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-torch python3-numpy python3-h5py
  fi
fi
"$python" -c 'import h5py' 2> /dev/null ||
  echo "bench-peer: no h5py for $python: PyTorch reads data/kjv.txt, and synthetic images for mlp/cnn"
[ -f data/fmnist-train.h5 ] || DTRAIN="$dtrain" bash scripts/get-data.sh
if [ ! -f data/kjv-train.h5 ] || [ ! -f data/kjv-val.h5 ]; then DTRAIN="$dtrain" bash scripts/get-text.sh; fi

if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# PyTorch runs two thread pools on the same cores, ATen's OpenMP one and Debian's pthread OpenBLAS:
# with OpenMP's spinning waits, 2 threads ran 3-8x slower than 1 (2 cores); passive waits fix it.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
out=bench-results
mkdir -p "$out"
day=$(date -u +%Y-%m-%d)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What runs: the CPU, dtrain's OpenBLAS kernels, PyTorch's version and the BLAS it loads.
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
dtrain_blas=$("$dtrain" info | sed -n 's/^ *blas: *//p' | sed -E 's/, [0-9]+ threads?$//')
# Where OpenBLAS picks kernels older than the CPU and dtrain restarts itself with a better family,
# PyTorch (the same Debian libopenblas) gets that family too: same GEMM kernels on both sides.
better=$(echo "$dtrain_blas" | sed -n 's/.*dtrain set OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -n "$better" ]; then export OPENBLAS_CORETYPE="$better"; fi
torch_info=$("$python" - << 'PY'
import ctypes, torch
a = torch.ones(64, 64); a @ a
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and ".so" in l})
blas = "BLAS " + (libs[0].rsplit("/", 1)[-1] if libs else "unknown")
if libs:
    lib = ctypes.CDLL(libs[0])
    lib.openblas_get_corename.restype = ctypes.c_char_p
    blas = "OpenBLAS " + lib.openblas_get_corename().decode() + " kernels"
print(f"PyTorch {torch.__version__} ({blas}, oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")
PY
)
if [ "$python" = /usr/bin/python3 ] && debian_torch=$(dpkg-query -W -f='${Version}' python3-torch 2> /dev/null); then
  torch_info="$torch_info, Debian $debian_torch"
fi
torch_info="$torch_info, OMP_WAIT_POLICY=$OMP_WAIT_POLICY)"
echo "bench-peer: CPU $cpu ($(nproc) cores); dtrain $dtrain_blas; $torch_info${OPENBLAS_CORETYPE:+; OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE}"
launch() {  # launch RANKS THREADS CMD...: mpiexec with no binding, each rank with THREADS threads
  local ranks=$1 threads=$2
  shift 2
  mpiexec -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" -x OPENBLAS_NUM_THREADS="$threads" \
    -x OMP_WAIT_POLICY \
    -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=$((20000 + RANDOM % 20000)) -x GLOO_SOCKET_IFNAME=lo "$@"
}

# The gpt's learning-rate warm-up for a run of STEPS steps: 50, or half the run when it is shorter.
lr_warmup() { echo $(($1 > 50 ? 50 : $1 / 2)); }
# dtrain's keys for MODEL (gpt: and the steps of the run): the architecture, data and optimizer
# bench/peer_pytorch.py mirrors.
dtrain_keys() {
  case "$1" in
    mlp) echo --model.type=mlp --model.hidden=512,256 --model.activation=relu --data.train=data/fmnist-train.h5 \
      --optim.type=adam --optim.lr=0.001 --optim.weight_decay=0 --optim.schedule=constant --train.batch_size=64 ;;
    cnn) echo --model.type=cnn --model.activation=relu --data.train=data/fmnist-train.h5 \
      --optim.type=adam --optim.lr=0.001 --optim.weight_decay=0 --optim.schedule=constant --train.batch_size=64 ;;
    gpt) echo --model.type=gpt --model.n_layer=4 --model.n_head=4 --model.n_embd=128 --model.ctx=128 \
      --data.train=data/kjv-train.h5 --optim.type=adamw --optim.lr=0.003 --optim.beta1=0.9 --optim.beta2=0.95 \
      --optim.weight_decay=0.1 --optim.clip_norm=1.0 --optim.schedule=cosine --optim.warmup_steps="$(lr_warmup "$2")" \
      --optim.min_lr=0 --train.batch_size=16 ;;
  esac
}
common_keys() {  # common_keys RUN_DIR THREADS MAX_STEPS LOG_EVERY
  echo --model.dropout=0 --train.seed=42 --train.threads="$2" --train.max_steps="$3" \
    --train.log_every="$4" --checkpoint.every=0 --checkpoint.keep_last=1 --log.dir="$1" --log.progress=lines
}
# time_s of rank 0's train record at STEP in METRICS.
time_at() { grep '"type":"train"' "$1" | grep "\"step\":$2," | sed -E 's/.*"time_s":([0-9.e+-]+).*/\1/' | tail -n 1; }

# One dtrain run: its JSON line (rate over steps WARMUP+1..WARMUP+TIMED from rank 0's clock).
run_dtrain() {  # run_dtrain MODEL RANKS THREADS TIMED
  local model=$1 ranks=$2 threads=$3 timed=$4 run="$work/dtrain-run" log_every t0 t1 start wall batch per_step unit
  log_every=$(awk -v w="$warmup" 'BEGIN { g = 10; while (w % g) g--; print g }')  # divides the warm-up
  rm -rf "$run"
  start=$(date +%s.%N)
  # shellcheck disable=SC2046  # the keys are words
  launch "$ranks" "$threads" "$dtrain" train $(common_keys "$run" "$threads" $((warmup + timed)) "$log_every") \
    $(dtrain_keys "$model" $((warmup + timed))) --data.test= > "$work/dtrain.log" 2>&1 ||
    { echo "bench-peer: dtrain $model failed:" >&2; tail -n 20 "$work/dtrain.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc -l)
  t0=$(time_at "$run/metrics.jsonl" "$warmup") t1=$(time_at "$run/metrics.jsonl" $((warmup + timed)))
  batch=$(dtrain_keys "$model" 1 | sed -E 's/.*--train.batch_size=([0-9]+).*/\1/')
  per_step=$((batch * ranks)) unit=samples
  if [ "$model" = gpt ]; then per_step=$((per_step * 128)) unit=tokens; fi
  grep -q "\"unit\":\"$unit\"" "$run/metrics.jsonl" || { echo "bench-peer: dtrain's $model rate is not in $unit" >&2; exit 1; }
  awk -v m="$model" -v r="$ranks" -v t="$threads" -v b="$batch" -v w="$warmup" -v n="$timed" -v t0="$t0" -v t1="$t1" \
    -v p="$per_step" -v u="$unit" -v wall="$wall" 'BEGIN {
      printf "{\"impl\":\"dtrain\",\"model\":\"%s\",\"ranks\":%d,\"threads\":%d,\"batch\":%d,\"warmup_steps\":%d,\"timed_steps\":%d,\"seconds\":%.4f,\"rate\":%.2f,\"unit\":\"%s\",\"wall_s\":%.2f}\n",
        m, r, t, b, w, n, t1 - t0, n * p / (t1 - t0), u, wall }'
}
# One PyTorch run: bench/peer_pytorch.py's JSON line with the process wall time added.
run_pytorch() {  # run_pytorch MODEL RANKS THREADS TIMED
  local start wall line
  start=$(date +%s.%N)
  line=$(launch "$2" "$3" "$python" bench/peer_pytorch.py --model "$1" --threads "$3" --warmup "$warmup" \
    --steps "$4" --lr-warmup "$(lr_warmup $((warmup + $4)))" 2> "$work/pytorch.log" | grep '^{') ||
    { echo "bench-peer: PyTorch $1 failed:" >&2; tail -n 20 "$work/pytorch.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc -l)
  echo "${line%\}},\"wall_s\":$(printf %.2f "$wall")}"
}
field() { sed -E "s/.*\"$1\":\"?([^,\"}]*).*/\1/"; }  # field NAME < JSON line

speed_comparison() {
  local json="$out/peer-$day.jsonl" round layout model ranks threads timed first second impl line
  : > "$json"
  for round in $(seq 1 "$rounds"); do
    for layout in ${layouts//,/ }; do
      ranks=${layout%x*} threads=${layout#*x}
      for model in ${models//,/ }; do
        timed=$steps
        if [ "$model" = gpt ]; then timed=$gpt_steps; fi
        first=dtrain second=pytorch
        if [ $((round % 2)) -eq 0 ]; then first=pytorch second=dtrain; fi
        for impl in $first $second; do
          line=$("run_$impl" "$model" "$ranks" "$threads" "$timed")
          echo "{\"bench\":\"peer\",\"round\":$round,\"layout\":\"$layout\",${line#\{}" | tee -a "$json"
        done
      done
    done
  done
  summarize "$json"
}

# Per model and layout: median rates of both and the median, least and greatest of the rounds'
# dtrain/PyTorch ratios (> 1: dtrain is faster); JSON lines, the table, and the data for the plot.
summarize() {
  local json=$1 model layout rows
  : > "$work/summary.dat"
  for layout in ${layouts//,/ }; do
    for model in ${models//,/ }; do
      rows=$(grep "\"layout\":\"$layout\"" "$json" | grep "\"model\":\"$model\"" |
        sed -E 's/.*"round":([0-9]+).*"impl":"([a-z]+)".*"rate":([0-9.e+-]+),"unit":"([a-z]+)".*/\1 \2 \3 \4/')
      echo "$rows" | awk -v m="$model" -v l="$layout" -v cpu="$cpu" -v blas="$dtrain_blas" -v torch="$torch_info" \
        -v day="$day" -v summary="$work/summary.dat" '
        function median(a, n,   i, j, x) {
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
          return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
        { rate[$1, $2] = $3; unit = $4; if ($1 > n) n = $1 }
        END {
          per = ""
          for (r = 1; r <= n; r++) { d[r] = rate[r, "dtrain"]; p[r] = rate[r, "pytorch"]; q[r] = d[r] / p[r]
                                     per = per sprintf("%s%.2f", r > 1 ? " " : "", q[r]) }
          md = median(d, n); mp = median(p, n); mq = median(q, n)
          printf "{\"bench\":\"peer_summary\",\"model\":\"%s\",\"layout\":\"%s\",\"unit\":\"%s\",\"rounds\":%d,\"dtrain_rate_median\":%.1f,\"pytorch_rate_median\":%.1f,\"ratio_median\":%.3f,\"ratio_min\":%.3f,\"ratio_max\":%.3f,\"cpu\":\"%s\",\"dtrain_blas\":\"%s\",\"pytorch\":\"%s\",\"date\":\"%s\"}\n",
            m, l, unit, n, md, mp, mq, q[1], q[n], cpu, blas, torch, day
          printf "%s %s %s %.0f %.0f %.3f %.3f %.3f %s\n", m, l, unit, md, mp, mq, q[1], q[n], per >> summary }'
    done
  done | tee -a "$json"
  echo
  echo "dtrain vs PyTorch DDP (gloo), $cpu, $(nproc) cores; dtrain: $dtrain_blas; $torch_info"
  echo "warm-up $warmup steps, then $steps timed steps (gpt: $gpt_steps); ratio = dtrain/PyTorch throughput" \
    "(> 1: dtrain faster); layout RxT: R ranks of T threads"
  printf '%-5s %-6s %-8s %12s %12s %8s %13s  %s\n' model layout unit dtrain/s pytorch/s ratio range per-round
  awk '{ per = $9; for (i = 10; i <= NF; i++) per = per " " $i
         printf "%-5s %-6s %-8s %12s %12s %8s %6s-%-6s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, per }' \
    "$work/summary.dat"
  plot_ratios "$out/peer-$day.png"
  echo "bench-peer: wrote $json${have_plot:+ and $out/peer-$day.png}"
}

have_plot=""
plot_ratios() {
  if ! command -v gnuplot > /dev/null; then
    echo "bench-peer: gnuplot not found (scripts/install-deps.sh installs it); no plot"
    return
  fi
  awk '{ print $1 "-" $2, $6, $7, $8 }' "$work/summary.dat" > "$work/ratios.dat"
  gnuplot << GP
set terminal pngcairo size 900,540
set output "$1"
set title "dtrain / PyTorch DDP throughput, median of $rounds rounds (bars: range)\n$cpu, $(nproc) cores"
set ylabel "throughput ratio (> 1: dtrain faster)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set grid y
set key off
plot "$work/ratios.dat" u 0:2:xtic(1) w boxes, "" u 0:2:3:4 w yerrorbars lc rgb "black" pt 0, \
     "" u 0:4:(sprintf("%.2f", \$2)) w labels offset 0,1, 1 w l dt 2 lc rgb "gray"
GP
  have_plot=1
}

# --learning: one run of each, 2 ranks x 1 thread; the validation loss after STEPS steps, the
# training time (rank 0's clock, from the first step) and the process's wall time.
learning_comparison() {
  local json="$out/peer-learning-$day.jsonl" log_every=$((learning / 40))
  log_every=$((log_every < 1 ? 1 : log_every > 50 ? 50 : log_every))  # about 40 points on the curve
  : > "$json"
  learning_dtrain "$log_every" | tee -a "$json"
  learning_pytorch "$log_every" | tee -a "$json"
  echo
  echo "gpt on KJV bytes, $learning steps (lr warm-up $(lr_warmup "$learning"), cosine to 0), 2 ranks x 1 thread x 16 x 128" \
    "tokens; $cpu, $(nproc) cores; dtrain: $dtrain_blas; $torch_info"
  printf '%-8s %22s %10s %10s\n' impl val_loss_nats_per_byte train_s wall_s
  local line
  while read -r line; do
    printf '%-8s %22s %10s %10s\n' "$(echo "$line" | field impl)" "$(echo "$line" | field val_loss)" \
      "$(echo "$line" | field train_s)" "$(echo "$line" | field wall_s)"
  done < "$json"
  plot_learning "$out/peer-learning-$day.png" "$log_every"
  echo "bench-peer: wrote $json${have_plot:+ and $out/peer-learning-$day.png}"
}
learning_dtrain() {  # learning_dtrain LOG_EVERY: the JSON line; the loss curve in $work/dtrain-curve.dat
  local run="$work/learn" start wall
  start=$(date +%s.%N)
  # shellcheck disable=SC2046  # the keys are words
  launch 2 1 "$dtrain" train $(common_keys "$run" 1 "$learning" "$1") $(dtrain_keys gpt "$learning") \
    --data.test=data/kjv-val.h5 --data.eval_windows=640 --train.eval_every="$learning" > "$work/dtrain.log" 2>&1 ||
    { echo "bench-peer: dtrain gpt failed:" >&2; tail -n 20 "$work/dtrain.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc -l)
  grep '"type":"train"' "$run/metrics.jsonl" | sed -E 's/.*"step":([0-9]+),.*"loss":([0-9.e+-]+),.*/\1 \2/' \
    > "$work/dtrain-curve.dat"
  printf '{"bench":"peer_learning","impl":"dtrain","model":"gpt","ranks":2,"threads":1,"batch":16,"steps":%d,"val_loss":%s,"train_s":%.2f,"wall_s":%.2f}\n' \
    "$learning" "$(grep '"type":"eval"' "$run/metrics.jsonl" | tail -n 1 | field test_loss)" \
    "$(time_at "$run/metrics.jsonl" "$learning")" "$wall"
}
learning_pytorch() {  # learning_pytorch LOG_EVERY: the JSON line; the loss curve in $work/pytorch-curve.dat
  local start wall line
  start=$(date +%s.%N)
  line=$(launch 2 1 "$python" bench/peer_pytorch.py --model gpt --threads 1 --learning "$learning" \
    --lr-warmup "$(lr_warmup "$learning")" --log-every "$1" --eval-windows 640 --curve "$work/pytorch-curve.jsonl" \
    2> "$work/pytorch.log" | grep '^{') ||
    { echo "bench-peer: PyTorch gpt failed:" >&2; tail -n 20 "$work/pytorch.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc -l)
  sed -E 's/.*"step": ([0-9]+),.*"loss": ([0-9.e+-]+),.*/\1 \2/' "$work/pytorch-curve.jsonl" > "$work/pytorch-curve.dat"
  echo "{\"bench\":\"peer_learning\",\"steps\":$learning,${line#\{}" | sed "s/}\$/,\"wall_s\":$(printf %.2f "$wall")}/"
}
plot_learning() {  # plot_learning PNG LOG_EVERY
  if ! command -v gnuplot > /dev/null; then
    echo "bench-peer: gnuplot not found (scripts/install-deps.sh installs it); no plot"
    return
  fi
  gnuplot << GP
set terminal pngcairo size 900,540
set output "$1"
set title "gpt on KJV bytes, 2 ranks x 16 x 128 tokens, $learning steps: training loss\n$cpu, $(nproc) cores"
set xlabel "step"
set ylabel "training loss (nats/byte, mean over $2 steps)"
set grid
plot "$work/dtrain-curve.dat" u 1:2 w l t "dtrain", "$work/pytorch-curve.dat" u 1:2 w l t "PyTorch DDP"
GP
  have_plot=1
}

if [ "$learning" -gt 0 ]; then learning_comparison; else speed_comparison; fi
