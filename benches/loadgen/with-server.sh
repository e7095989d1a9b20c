#!/usr/bin/env bash
# Starts a fresh switchboard server on a free loopback port, runs the load
# generator against it with --url and --server-pid filled in, then kills the
# server. Usage: with-server.sh [--server-flags "..."] LOADGEN_ARGS...
# SERVER / LOADGEN override the binaries (default: target/release/...).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
SERVER="${SERVER:-$here/target/release/switchboard}"
LOADGEN="${LOADGEN:-$here/target/release/switchboard-loadgen}"
server_flags=""
if [[ "${1:-}" == "--server-flags" ]]; then server_flags="$2"; shift 2; fi
out="$(mktemp)"; err="$(mktemp)"
# shellcheck disable=SC2086
"$SERVER" --listen 127.0.0.1:0 --allow-anonymous $server_flags >"$out" 2>"$err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out" "$err"' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
url="$(sed -n 's/^listening on //p' "$out" | head -1)"
[[ -n "$url" ]] || { echo "server did not start" >&2; cat "$err" >&2; exit 1; }
sleep 0.3   # let the server settle before the "before" RSS reading
"$LOADGEN" --url "$url" --server-pid "$pid" "$@"
if [[ -s "$err" ]]; then echo "--- server stderr (last 5 lines):" >&2; tail -5 "$err" >&2; fi
