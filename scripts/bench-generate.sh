#!/usr/bin/env bash
# Generation benchmark of dtrain-serve's generate_stream on a byte-level gpt: tokens/s and time to
# first token for 1 and 16 concurrent streams (bench/generate_load.js, node), each stream
# MAX_TOKENS (default 128) tokens of a 32-byte prompt, temperature 0.8, top_k 40. Run twice in the
# same session: with the key/value cache (model_with_past.onnx) and recomputing the context
# (the same model.onnx in a repository copy without model_with_past.onnx). Writes
# bench-results/generate.json (JSON lines), a table, and bench-results/generate.png (needs gnuplot).
#   scripts/bench-generate.sh [BUILD_DIR=build] [REPO=models] [MODEL=gpt-bench]
# Without REPO/MODEL it first makes one with BUILD_DIR/launch/dtrain: a byte corpus of docs/*.md,
# a gpt of 4 layers, 4 heads, 128 wide, ctx 256 (0.8 M parameters) trained TRAIN_STEPS (default
# 200) steps on one process, exported as REPO/MODEL (both graphs).
# Environment: MAX_TOKENS (128), STREAMS ("1 16"), SERVE_ARGS (extra dtrain-serve options).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
repo=${2:-models}
model=${3:-gpt-bench}
max_tokens=${MAX_TOKENS:-128}
streams_list=${STREAMS:-1 16}
serve="$build/serve/dtrain-serve"
prompt="In the beginning the server said "  # 32 bytes
[ -x "$serve" ] || { echo "bench-generate: no $serve (build the dtrain-serve target)" >&2; exit 1; }
command -v node > /dev/null || { echo "bench-generate: node not found" >&2; exit 1; }
out=bench-results
mkdir -p "$out"
rm -f "$out/generate.json"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

make_model() {  # a small gpt trained briefly on the docs, exported as $repo/$model
  local dtrain="$build/launch/dtrain" steps=${TRAIN_STEPS:-200}
  [ -x "$dtrain" ] || { echo "bench-generate: no $repo/$model and no $dtrain to make one" >&2; exit 1; }
  cat docs/*.md README.md > "$work/corpus.txt"
  "$dtrain" data convert --from text --input "$work/corpus.txt" --out "$work/train.h5" > /dev/null
  "$dtrain" train --model.type=gpt --model.n_layer=4 --model.n_head=4 --model.n_embd=128 --model.ctx=256 \
    --data.train="$work/train.h5" --data.test= --optim.type=adamw --optim.lr=0.003 --optim.warmup_steps=20 \
    --optim.schedule=cosine --train.max_steps="$steps" --train.batch_size=8 --train.log_every=50 \
    --comm.backend=single --log.dir="$work/run" > "$work/train.log" 2>&1 ||
    { cat "$work/train.log" >&2; exit 1; }
  "$dtrain" export --checkpoint "$(ls -1 "$work"/run/ckpt/*.h5 | tail -n 1)" --repo "$repo" --name "$model" --data none
}
[ -d "$repo/$model" ] || make_model
version=$(ls -1 "$repo/$model" | grep -E '^[0-9]+$' | sort -n | tail -n 1)
[ -f "$repo/$model/$version/model_with_past.onnx" ] ||
  { echo "bench-generate: $repo/$model/$version has no model_with_past.onnx (not a language model export?)" >&2; exit 1; }
# The recompute path: the same model.onnx and config.json without model_with_past.onnx.
mkdir -p "$work/recompute/$model/$version"
ln -s "$(realpath "$repo/$model/config.json")" "$work/recompute/$model/config.json"
ln -s "$(realpath "$repo/$model/$version/model.onnx")" "$work/recompute/$model/$version/model.onnx"

start_server() {  # start_server REPO LOG: sets server_pid and port
  # shellcheck disable=SC2086  # SERVE_ARGS: extra dtrain-serve options, split on spaces
  "$serve" --repo "$1" --port 0 --poll-seconds 0 --max-tokens "$max_tokens" ${SERVE_ARGS:-} > "$2" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 300); do
    port=$(sed -nE 's/.*listening on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$2" | head -n 1)
    if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/models/$model/ready" > /dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-generate: dtrain-serve did not get ready:" >&2
  cat "$2" >&2
  exit 1
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=""
}
histograms() {  # "SUM COUNT" of the server's decode_batch_size, time_to_first_token and decode_step so far
  local m
  m=$(curl -sf "http://127.0.0.1:$port/metrics")
  for h in decode_batch_size time_to_first_token_seconds decode_step_seconds; do
    echo "$m" | sed -nE "s/^dtrain_serve_${h}_(sum|count)\{model=\"$model\"[^}]*\} ([0-9.e+-]+)$/\1 \2/p" |
      awk '$1 == "sum" { s = $2 } $1 == "count" { n = $2 } END { printf "%.9g %d ", s, n }'
  done
}
# The means over one run from two histograms() snapshots: sequences per step, server-side time to
# first token (ms) and decoding step time (ms).
server_means() {
  awk '{ for (i = 0; i < 3; ++i) { n = $(8 + 2 * i) - $(2 + 2 * i); m[i] = n > 0 ? ($(7 + 2 * i) - $(1 + 2 * i)) / n : 0 } }
       END { printf "\"mean_step_sequences\":%.2f,\"server_ttft_ms_mean\":%.3f,\"decode_step_ms_mean\":%.3f", m[0], m[1] * 1e3, m[2] * 1e3 }'
}

for path in kv_cache recompute; do
  if [ "$path" = kv_cache ]; then start_server "$repo" "$work/serve-$path.log"; else start_server "$work/recompute" "$work/serve-$path.log"; fi
  node bench/generate_load.js "$port" "$model" 1 8 "$prompt" > /dev/null  # warm-up
  for n in $streams_list; do
    before=$(histograms)
    r=$(node bench/generate_load.js "$port" "$model" "$n" "$max_tokens" "$prompt")
    means=$(echo "$before $(histograms)" | server_means)
    echo "{\"bench\":\"generate\",\"model\":\"$model\",\"path\":\"$path\",${r#\{}" | sed "s/}\$/,$means}/" |
      tee -a "$out/generate.json"
  done
  stop_server
done

echo
# The table, and generate.dat (path streams tokens/s) for the ratios and the plot.
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const cols = [["path", 9], ["streams", 7], ["tokens", 7], ["tokens_per_s", 12], ["ttft_ms_p50", 11],
    ["ttft_ms_max", 11], ["server_ttft_ms_mean", 19], ["stream_tokens_per_s_p50", 23], ["mean_step_sequences", 19],
    ["decode_step_ms_mean", 19]];
  console.log(cols.map(([k, w]) => k.padStart(w)).join(" "));
  for (const r of rows) console.log(cols.map(([k, w]) => String(r[k]).padStart(w)).join(" "));
  require("fs").writeFileSync(process.argv[2], rows.map((r) => `${r.path} ${r.streams} ${r.tokens_per_s}\n`).join(""));
' "$out/generate.json" "$work/generate.dat"
for n in $streams_list; do
  awk -v n="$n" '$2 == n { t[$1] = $3 } END { if (t["recompute"] > 0) printf "%s streams: key/value cache / recompute = %.2fx tokens/s\n", n, t["kv_cache"] / t["recompute"] }' "$work/generate.dat"
done
if command -v gnuplot > /dev/null; then
  gnuplot << GP
set terminal pngcairo size 800,500
set output "$out/generate.png"
set termoption noenhanced
set title "dtrain-serve generate_stream, $model, $max_tokens tokens per stream"
set xlabel "concurrent streams"
set ylabel "tokens/s (all streams)"
set logscale x 2
set logscale y
set xrange [0.7:24]
set key top left
plot "< grep '^kv_cache ' $work/generate.dat" u 2:3 w linespoints t "key/value cache", \
     "< grep '^recompute ' $work/generate.dat" u 2:3 w linespoints t "recompute (model.onnx)"
GP
  echo "bench-generate: wrote $out/generate.json and $out/generate.png"
else
  echo "bench-generate: wrote $out/generate.json (gnuplot not found: no plot)"
fi
