#!/usr/bin/env bash
# Runs Switchboard and the reference peers (../shared/peers) side by side
# with the same load generator, in one run, on this machine, and prints a
# markdown table plus the raw JSON lines (to $OUT, default /tmp/sb-compare).
#
#   ../shared/peers/setup.sh /tmp/switchboard-peers     # once
#   cargo build --release -p switchboard-tokio --bin switchboard -p switchboard-loadgen
#   benches/compare.sh [PEERS_DIR]
#   SERVER_BEFORE=/path/to/old/switchboard ONLY="switchboard-before switchboard" benches/compare.sh
#                                  # a before/after comparison of one change
#   ONLY="switchboard switchboard-smol" benches/compare.sh   # tokio against smol
#                                  # (cargo build --release -p switchboard-smol first)
#
# Loopback only; every load run is bounded (--duration-limit) and every
# server it starts is killed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${1:-/tmp/switchboard-peers}"
SERVER="${SERVER:-$here/target/release/switchboard}"
SERVER_SMOL="${SERVER_SMOL:-$here/target/release/switchboard-smol}"
LOADGEN="${LOADGEN:-$here/target/release/switchboard-loadgen}"
OUT="${OUT:-/tmp/sb-compare}"
ONLY="${ONLY:-switchboard switchboard-smol switchboard+history rust_bare uws node_ws fastapi}"
ROUNDS="${ROUNDS:-1}"
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pid=""
cleanup() { [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=""; }
trap cleanup EXIT

start() { # name -> sets url, pid, gen (loadgen protocol args)
    local name=$1 port
    port=$(free_port)
    case $name in
        switchboard)
            "$SERVER" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard-smol)
            "$SERVER_SMOL" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard-before)
            # SERVER_BEFORE: a build of an earlier commit, to compare in one run.
            "${SERVER_BEFORE:?set SERVER_BEFORE to an earlier switchboard binary}" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard+history)
            printf 'allow_anonymous = true\n[namespaces.bench]\nhistory_size = 100\n' >"$OUT/history.toml"
            "$SERVER" --listen "127.0.0.1:$port" --config "$OUT/history.toml" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        rust_bare) "$peers/rust_bare/run.sh" "$port" >/dev/null 2>&1 &
            url="ws://127.0.0.1:$port/"; gen=(--hello none --publish-template '{"t":$T,"p":"$P"}') ;;
        uws) "$peers/uws/run.sh" "$port" >/dev/null 2>&1 &
            url="ws://127.0.0.1:$port/"; gen=(--hello none --publish-template '{"t":$T,"p":"$P"}') ;;
        node_ws) "$peers/node_ws/run.sh" "$port" >/dev/null 2>&1 &
            url="ws://127.0.0.1:$port/"; gen=(--hello none --publish-template '{"t":$T,"p":"$P"}') ;;
        fastapi) "$peers/fastapi_seed/run.sh" "$port" >/dev/null 2>&1 &
            url="ws://127.0.0.1:$port/ws/chat"; gen=(--hello none --publish-template '{"t":$T,"p":"$P"}') ;;
    esac
    pid=$!
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    # The peers start as a launcher script; measure the real server process.
    local child; child=$(pgrep -P "$pid" | head -1 || true)
    spid=${child:-$pid}
    sleep 0.5
}

run() { # name scenario args...
    local name=$1 scenario=$2; shift 2
    start "$name"
    "$LOADGEN" --url "$url" --server-pid "$spid" "${gen[@]}" "$@" >"$OUT/$name.$scenario.json" 2>"$OUT/$name.$scenario.log" || true
    cleanup
    echo "$name $scenario: $(head -c 300 "$OUT/$name.$scenario.json")" >&2
}

for round in $(seq "$ROUNDS"); do
for name in $ONLY; do
    run "$name" idle10k --connections 10000 --idle-secs 5 --duration-limit 120
    run "$name" fan1k --connections 1000 --messages 2000 --payload 100 --duration-limit 120
    run "$name" fan10k --connections 10000 --messages 200 --payload 100 --duration-limit 180
    run "$name" lat1k --connections 1000 --messages 200 --rate 20 --duration-limit 60
done
done

python3 - "$OUT" $ONLY <<'PY'
import json, sys, os
out, names = sys.argv[1], sys.argv[2:]
def get(n, s):
    try:
        return json.load(open(os.path.join(out, f"{n}.{s}.json")))
    except Exception:
        return None
def fmt_rate(d):
    if not d or "publish" not in d: return "—"
    p = d["publish"]; ok = p["delivered"] == p["expected"]
    return f'{p["delivered_per_sec"]/1e6:.2f} M' + ("" if ok else f' ({p["delivered"]}/{p["expected"]})')
print("| server | RSS/idle conn @10K | 1K subs × 2,000 msgs/s | 10K subs × 200 msgs/s | p50 / p99 @ 1K subs, 20 msg/s | CPU µs/delivery burst / trickle |")
print("|---|---|---|---|---|---|")
for n in names:
    idle, f1, f10, lat = (get(n, s) for s in ("idle10k", "fan1k", "fan10k", "lat1k"))
    rss = f'{idle["server"]["rss_per_connection_kib"]:.2f} KiB' if idle and idle.get("server", {}).get("rss_per_connection_kib") else "—"
    l = lat["publish"]["latency_ms"] if lat and "publish" in lat else None
    ls = f'{l["p50"]:.1f} / {l["p99"]:.1f} ms' if l else "—"
    cpu = lambda d: f'{d["server"]["cpu_us_per_delivery"]:.2f}' if d and d.get("server", {}).get("cpu_us_per_delivery") else "—"
    print(f"| {n} | {rss} | {fmt_rate(f1)} | {fmt_rate(f10)} | {ls} | {cpu(f1)} / {cpu(lat)} |")
PY
