#!/usr/bin/env bash
# Several dtrain-serve processes behind haproxy (Debian package haproxy), health-checked on
# /v2/health/ready. wrk sends POST BODY to /v2/models/MODEL/infer through haproxy for SECONDS
# while backend 1 is stopped with SIGTERM (it drains: not-ready first, then closes) and started
# again. Prints wrk's summary and how many requests each backend answered; exits 1 when any
# request failed (a non-2xx answer or a socket error).
#   examples/load-balancing/run.sh REPO MODEL BODY.json [SECONDS=12]
# Environment: DTRAIN_SERVE (build/serve/dtrain-serve), BACKENDS (2), LB_PORT (8100), first
# backend port BASE_PORT (8101), CONNECTIONS (16), NOTICE_SECONDS (1.5, --drain-notice-seconds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=${1:?usage: run.sh REPO MODEL BODY.json [SECONDS]}
model=${2:?usage: run.sh REPO MODEL BODY.json [SECONDS]}
body=${3:?usage: run.sh REPO MODEL BODY.json [SECONDS]}
seconds=${4:-12}
serve=${DTRAIN_SERVE:-build/serve/dtrain-serve}
backends=${BACKENDS:-2} lb_port=${LB_PORT:-8100} base_port=${BASE_PORT:-8101}
connections=${CONNECTIONS:-16} notice=${NOTICE_SECONDS:-1.5}
for tool in haproxy wrk curl; do
  command -v "$tool" > /dev/null || { echo "run.sh: $tool not found (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$serve" ] || { echo "run.sh: no dtrain-serve at $serve (set DTRAIN_SERVE)" >&2; exit 2; }
[ -f "$body" ] || { echo "run.sh: no request body $body" >&2; exit 2; }
[ "$backends" -ge 2 ] || { echo "run.sh: BACKENDS must be at least 2" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain_lb.XXXXXX")
pids=()
declare -A backend_pid
cleanup() {
  for pid in "${pids[@]}" "${backend_pid[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_ready() {  # wait_ready URL WHAT: up to 20 s for a 200
  for _ in $(seq 1 100); do
    if curl -sf "$1" > /dev/null; then return 0; fi
    sleep 0.2
  done
  echo "run.sh: $2 not ready after 20 s" >&2
  cat "$work"/*.log >&2
  exit 1
}
start_backend() {  # start_backend K: dtrain-serve number K on BASE_PORT + K - 1
  local k=$1 port=$((base_port + $1 - 1))
  "$serve" --repo "$repo" --port "$port" --poll-seconds 0 --drain-notice-seconds "$notice" \
    >> "$work/serve-$k.log" 2>&1 &
  backend_pid[$k]=$!
  wait_ready "http://127.0.0.1:$port/v2/health/ready" "dtrain-serve $k"
}

cp "$here/haproxy.cfg" "$work/haproxy.cfg"
for k in $(seq 1 "$backends"); do
  echo "    server s$k 127.0.0.1:$((base_port + k - 1))" >> "$work/haproxy.cfg"
  start_backend "$k"
done
LB_ADDR="127.0.0.1:$lb_port" haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$lb_port/v2/health/ready" "haproxy on port $lb_port"
echo "run.sh: $backends dtrain-serve behind haproxy on 127.0.0.1:$lb_port; wrk -c $connections for ${seconds} s"

cat > "$work/post.lua" << LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("$body", "rb"))
wrk.body = f:read("*a")
f:close()
LUA
wrk -t 2 -c "$connections" -d "${seconds}s" -s "$work/post.lua" \
  "http://127.0.0.1:$lb_port/v2/models/$model/infer" > "$work/wrk.txt" 2>&1 &
wrk_pid=$!

# A third of the way in: SIGTERM backend 1 and wait for it to exit; start it again.
sleep "$(awk -v s="$seconds" 'BEGIN { print s / 3 }')"
echo "run.sh: SIGTERM to dtrain-serve 1"
kill -TERM "${backend_pid[1]}"
rc=0
wait "${backend_pid[1]}" || rc=$?
echo "run.sh: dtrain-serve 1 exited $rc; starting it again"
[ "$rc" = 0 ] || { cat "$work/serve-1.log" >&2; exit 1; }
start_backend 1
wait "$wrk_pid"
cat "$work/wrk.txt"

requests=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$work/wrk.txt")
non2xx=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$work/wrk.txt")
socket=$(sed -nE 's/^ *Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+).*/\1 \2 \3 \4/p' "$work/wrk.txt")
failed=$(echo "${non2xx:-0} ${socket:-0}" | awk '{ n = 0; for (i = 1; i <= NF; i++) n += $i; print n }')
for k in $(seq 1 "$backends"); do
  echo "run.sh: dtrain-serve $k answered $(grep -c ' /v2/models/.*/infer 200 ' "$work/serve-$k.log" || true) requests"
done
echo "run.sh: $requests requests, $failed failed"
[ -n "$requests" ] && [ "$requests" -gt 0 ] || { echo "run.sh: wrk sent no request" >&2; exit 1; }
[ "$failed" = 0 ] || { cat "$work/haproxy.log" >&2; exit 1; }
