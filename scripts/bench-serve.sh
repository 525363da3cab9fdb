#!/usr/bin/env bash
# Load benchmark of dtrain-serve with wrk on 127.0.0.1: throughput, p50/p99 latency and non-2xx
# answers for one test image per request at concurrency 1, 16 and 64, in four modes in the same
# run: eager batching (the default, --max-batch 64), Triton's delay batching (--batching delay
# --max-queue-delay-us 2000), batching off (--max-batch 1), each with JSON bodies, and eager
# batching with binary bodies (the binary tensor data extension: the image as 784 raw bytes, the
# outputs binary too; UINT8 models only), plus the server's resident memory at the start and end
# of each mode; then a RSS_SECONDS run at concurrency 64 (eager) sampling the server's resident
# memory every 5 s, after
# WARMUP_SECONDS (environment, default 20) of the same load; then the
# single-request latency of dtrain's engine (build/bench/bench_engine) against onnxruntime-node
# (bench/ort_latency.js, from the README test command's npm step) on the same model file, batch 1
# and 64, one thread each, alternated ENGINE_ROUNDS times. Writes bench-results/serve.json (JSON
# lines), a table, and bench-results/serve.png (needs gnuplot). Builds nothing.
#   scripts/bench-serve.sh [BUILD_DIR=build] [SECONDS=10] [REPO=models] [MODEL=fmnist-cnn or fmnist-mlp] [RSS_SECONDS=60]
# Environment: ROUNDS (3), WARMUP_SECONDS (20), ENGINE_ROUNDS (3), SERVE_ARGS (extra dtrain-serve options for
# every run, e.g. "--threads 64").
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-10}
repo=${3:-models}
model=${4:-}
rss_seconds=${5:-60}
serve_rounds=${ROUNDS:-3}
if [ -z "$model" ]; then
  if [ -d "$repo/fmnist-cnn" ]; then model=fmnist-cnn; else model=fmnist-mlp; fi
fi
serve="$build/serve/dtrain-serve"
[ -x "$serve" ] || { echo "bench-serve: no $serve (build the dtrain-serve target)" >&2; exit 1; }
command -v wrk > /dev/null || { echo "bench-serve: wrk not found (apt-get install wrk)" >&2; exit 1; }
[ -d "$repo/$model" ] || { echo "bench-serve: no model $repo/$model (dtrain export it first)" >&2; exit 1; }
out=bench-results
mkdir -p "$out"
rm -f "$out/serve.json"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

start_server() {  # start_server LOG ARGS...: sets server_pid and port
  local log=$1
  shift
  # shellcheck disable=SC2086  # SERVE_ARGS: extra dtrain-serve options, split on spaces
  "$serve" --repo "$repo" --port 0 --poll-seconds 0 ${SERVE_ARGS:-} "$@" > "$log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 200); do
    port=$(sed -nE 's/.*listening on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$log" | head -n 1)
    if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-serve: dtrain-serve did not get ready:" >&2
  cat "$log" >&2
  exit 1
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=""
}
batch_stats() {  # "SUM COUNT" of the batch-size histogram: rows and batches run so far
  curl -sf "http://127.0.0.1:$port/metrics" | sed -nE "s/^dtrain_serve_batch_size_(sum|count)\{model=\"$model\"[^}]*\} ([0-9.e+]+)$/\1 \2/p" |
    awk '$1 == "sum" { s = $2 } $1 == "count" { n = $2 } END { printf "%d %d", s, n }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }

# One request body: the first Fashion-MNIST test image in the model's input shape and datatype.
start_server "$work/probe.log"
meta=$(curl -sf "http://127.0.0.1:$port/v2/models/$model")
stop_server
shape=$(echo "$meta" | grep -oE '"inputs":\[\{[^}]*\}' | grep -oE '"shape":\[[^]]*\]' | sed -E 's/"shape"://; s/-1/1/')
datatype=$(echo "$meta" | grep -oE '"inputs":\[\{[^}]*\}' | grep -oE '"datatype":"[A-Z0-9]+"' | sed -E 's/"datatype":"(.*)"/\1/')
fm=/usr/share/datasets/fashion-mnist
pixels=$(set +o pipefail; zcat "$fm/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784 | od -An -tu1 -v | tr -s ' \n' ' ' | sed 's/^ *//; s/ *$//; s/ /,/g')
printf '{"inputs":[{"name":"input","shape":%s,"datatype":"%s","data":[%s]}]}' "$shape" "$datatype" "$pixels" > "$work/body.json"
# The binary body: a JSON header of Inference-Header-Content-Length bytes, then the raw pixels.
printf '{"inputs":[{"name":"input","shape":%s,"datatype":"UINT8","parameters":{"binary_data_size":784}}],"parameters":{"binary_data_output":true}}' \
  "$shape" > "$work/binary-header.json"
binary_header_length=$(stat -c %s "$work/binary-header.json")
{ cat "$work/binary-header.json"; (set +o pipefail; zcat "$fm/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784); } > "$work/body.bin"
wrk_script() {  # wrk_script BODY CONTENT_TYPE [HEADER_LENGTH]: a wrk Lua script posting BODY
  local binary_header=""
  if [ -n "${3:-}" ]; then binary_header="wrk.headers[\"Inference-Header-Content-Length\"] = \"$3\""; fi
  cat << LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "$2"
$binary_header
local f = io.open("$1", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_s":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
}
wrk_script "$work/body.json" application/json > "$work/post.lua"
wrk_script "$work/body.bin" application/octet-stream "$binary_header_length" > "$work/post-binary.lua"
modes="eager delay off"
if [ "$datatype" = UINT8 ]; then modes="$modes binary"; else echo "bench-serve: $model takes $datatype, not UINT8: no binary mode"; fi

# ROUNDS rounds, each running every mode in turn: the table gives each point's median over rounds
# (this machine's noise moves single 10 s runs by +-30 %).
for round in $(seq 1 "$serve_rounds"); do
for mode in $modes; do
  script=$work/post.lua
  case $mode in
    eager) start_server "$work/serve-$mode.log" --max-batch 64 ;;
    delay) start_server "$work/serve-$mode.log" --max-batch 64 --batching delay --max-queue-delay-us 2000 ;;
    off) start_server "$work/serve-$mode.log" --max-batch 1 ;;
    binary)
      start_server "$work/serve-$mode.log" --max-batch 64
      script=$work/post-binary.lua
      ;;
  esac
  rss_start=$(rss_kb)
  for c in 1 16 64; do
    threads=$((c < 2 ? 1 : 2))
    before=$(batch_stats)
    r=$(wrk -t "$threads" -c "$c" -d "${seconds}s" --timeout 10s -s "$script" "http://127.0.0.1:$port/v2/models/$model/infer" |
      sed -n 's/^RESULT //p')
    requests=$(echo "$r" | sed -E 's/.*"requests":([0-9]+).*/\1/')
    duration=$(echo "$r" | sed -E 's/.*"duration_s":([0-9.]+).*/\1/')
    rps=$(awk -v n="$requests" -v d="$duration" 'BEGIN { printf "%.1f", n / d }')
    batch_rows=$(echo "$before $(batch_stats)" | awk '{ n = $4 - $2; printf "%.2f", (n > 0 ? ($3 - $1) / n : 0) }')
    fields=${r#\{}
    echo "{\"bench\":\"serve\",\"round\":$round,\"model\":\"$model\",\"batching\":\"$mode\",\"concurrency\":$c,\"seconds\":$seconds,\"requests_per_s\":$rps,${fields%\}},\"mean_batch_rows\":$batch_rows}" |
      tee -a "$out/serve.json"
  done
  rss_end=$(rss_kb)
  echo "{\"bench\":\"serve_rss\",\"round\":$round,\"model\":\"$model\",\"batching\":\"$mode\",\"rss_kb_start\":$rss_start,\"rss_kb_end\":$rss_end}" | tee -a "$out/serve.json"
  stop_server
done
done

# Resident memory under a steady load: the same load first warms the server up for WARMUP_SECONDS
# (HTTP threads and their malloc arenas reach their working set), then RSS_SECONDS sampled every
# 5 s; flat means max/min within +-10 %. The idle and after-warm-up figures are reported too.
warmup_seconds=${WARMUP_SECONDS:-20}
start_server "$work/serve-rss.log" --max-batch 64
rss_idle=$(rss_kb)
wrk -t 2 -c 64 -d "$((warmup_seconds + rss_seconds))s" --timeout 10s -s "$work/post.lua" \
  "http://127.0.0.1:$port/v2/models/$model/infer" > "$work/wrk-rss.txt" &
wrk_pid=$!
sleep "$warmup_seconds"
samples=""
for _ in $(seq 1 $((rss_seconds / 5))); do
  sleep 5
  samples="$samples${samples:+,}$(rss_kb)"
done
wait "$wrk_pid"
rss_non2xx=$(sed -n 's/^RESULT //p' "$work/wrk-rss.txt" | sed -E 's/.*"non_2xx":([0-9]+).*/\1/')
stop_server
echo "{\"bench\":\"serve_rss_steady\",\"model\":\"$model\",\"idle_rss_kb\":$rss_idle,\"warmup_s\":$warmup_seconds,\"seconds\":$rss_seconds,\"rss_kb\":[$samples],\"non_2xx\":${rss_non2xx:-0}}" |
  tee -a "$out/serve.json"
echo "$samples" | tr ',' '\n' | awk -v idle="$rss_idle" -v w="$warmup_seconds" 'NR == 1 { lo = hi = $1 } { if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
  END { if (NR) printf "resident memory: %d KiB idle; over the steady run after %d s of warm-up %d..%d KiB (max/min %.3f)\n", idle, w, lo, hi, hi / lo }'

# dtrain's engine vs onnxruntime-node on the model file the server serves by default (the newest).
onnx="$repo/$model/$(ls -1 "$repo/$model" | grep -E '^[0-9]+$' | sort -n | tail -n 1)/model.onnx"
# ENGINE_ROUNDS (default 3) alternations of the two, each round's ratio and their median: on a
# shared VM one run can land in a slow spell that the other escapes.
node_prefix=${DTRAIN_ORT_NODE_PREFIX:-$build/node}
rounds=${ENGINE_ROUNDS:-3}
: > "$work/engine.json"
if command -v node > /dev/null && [ -f "$node_prefix/node_modules/onnxruntime-node/package.json" ]; then
  for round in $(seq 1 "$serve_rounds"); do
    { "$build/bench/bench_engine" "$onnx" --batches 1,64 --iters 200 --threads 1
      node bench/ort_latency.js "$node_prefix" "$onnx" 1,64 200 1; } | sed "s/^{/{\"round\":$round,/" |
      tee -a "$work/engine.json" | tee -a "$out/serve.json"
  done
  for b in 1 64; do
    grep "\"batch\":$b," "$work/engine.json" |
      sed -E 's/.*"round":([0-9]+).*"impl":"([a-z]+)".*"median_ms":([0-9.e+-]+).*/\1 \2 \3/' |
      awk -v b="$b" '{ t[$1, $2] = $3; if ($1 > n) n = $1 }
        END { line = ""
              for (r = 1; r <= n; r++) { q[r] = t[r, "dtrain"] / t[r, "onnxruntime"]; line = line sprintf(" %.3f/%.3f", t[r, "dtrain"], t[r, "onnxruntime"]) }
              for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (q[j] < q[i]) { x = q[i]; q[i] = q[j]; q[j] = x }
              printf "engine latency, batch %d, dtrain/onnxruntime ms per round:%s; median ratio %.2fx (range %.2f-%.2f)\n", b, line, q[int((n + 1) / 2)], q[1], q[n] }'
  done
else
  "$build/bench/bench_engine" "$onnx" --batches 1,64 --iters 200 --threads 1 | tee -a "$out/serve.json"
  echo "bench-serve: onnxruntime-node is not under $node_prefix (the README's test command installs it): no engine comparison"
fi

echo
printf '%-9s %11s %12s %9s %9s %8s  (median of %d rounds)\n' batching concurrency requests/s p50_ms p99_ms non_2xx "$serve_rounds"
grep '"bench":"serve"' "$out/serve.json" |
  sed -E 's/.*"batching":"([a-z]+)","concurrency":([0-9]+).*"requests_per_s":([0-9.]+).*"p50_ms":([0-9.]+),"p99_ms":([0-9.]+),"non_2xx":([0-9]+).*/\1 \2 \3 \4 \5 \6/' |
  sort -k1,1 -k2,2n -k3,3g |
  awk '{ key = $1 " " $2; n[key]++; row[key, n[key]] = $0; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
       END { for (i = 1; i <= k; i++) { key = order[i]; print row[key, int((n[key] + 1) / 2)] } }' |
  tee "$work/serve.dat" | awk '{ printf "%-9s %11s %12s %9s %9s %8s\n", $1, $2, $3, $4, $5, $6 }'
awk '{ r[$1, $2] = $3 }
  END { for (c = 1; c <= 64; c *= 4) if (c != 4) {
          printf "concurrency %2d: eager/off %.2fx, delay/off %.2fx, eager/delay %.2fx", c, r["eager", c] / r["off", c], r["delay", c] / r["off", c], r["eager", c] / r["delay", c]
          if (r["binary", c] > 0) printf ", binary/JSON (eager) %.2fx", r["binary", c] / r["eager", c]
          printf "\n" } }' "$work/serve.dat"
if command -v gnuplot > /dev/null; then
  gnuplot << GP
set terminal pngcairo size 800,500
set output "$out/serve.png"
set title "dtrain-serve $model, one image per request, ${seconds} s per point"
set xlabel "concurrent connections"
set ylabel "requests/s"
set logscale x 2
set key top left
plot "< grep '^eager ' $work/serve.dat" u 2:3 w linespoints t "eager batching (max 64 rows)", \
     "< grep '^delay ' $work/serve.dat" u 2:3 w linespoints t "delay batching (max 64 rows, 2 ms)", \
     "< grep '^off ' $work/serve.dat" u 2:3 w linespoints t "batching off (max batch 1)", \
     "< grep '^binary ' $work/serve.dat" u 2:3 w linespoints t "eager, binary tensors"
GP
  echo "bench-serve: wrote $out/serve.json and $out/serve.png"
else
  echo "bench-serve: wrote $out/serve.json (gnuplot not found: no plot)"
fi
