# Sourced by the quickstart scripts: starts dtrain-serve in the background and waits until it is ready.
#   start_serve REPO PORT LOG   sets serve_pid; stops the server on exit; fails with its log if it
#                               is not ready within 20 s
#   stop_serve                  SIGTERM (the server drains) and wait
start_serve() {
  local repo="$1" port="$2" log="$3"
  mkdir -p "$(dirname "$log")"
  build/serve/dtrain-serve --repo "$repo" --port "$port" > "$log" 2>&1 &
  serve_pid=$!
  trap 'kill -TERM "$serve_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do  # up to 20 s for the repository to load
    if curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null; then return 0; fi
    if ! kill -0 "$serve_pid" 2>/dev/null; then cat "$log"; return 1; fi
    sleep 0.2
  done
  echo "dtrain-serve not ready after 20 s" >&2
  cat "$log"
  return 1
}

stop_serve() {
  kill -TERM "$serve_pid"
  wait "$serve_pid"
  trap - EXIT
}
