#!/usr/bin/env bash
# The Redis store's numbers (issue 11, "Done when"), on loopback, with the
# load generator:
#   lat    the latency that cross-node delivery adds over one node: subscribers
#          on node B and the publisher on node A, against all of them on A
#          (both with the Redis store; the in-memory store for reference), at
#          the same rate;
#   tput   delivered messages per second: one node (in-memory store), one
#          node (Redis store), two nodes (subscribers spread over A and B, one
#          publisher on each);
#   acks   the publishes per second one Redis sustains with acks: no
#          subscribers, PUBLISHERS connections spread over two nodes, each
#          with a window of WINDOW unacked publishes, over 64 rooms;
#   mem    the Redis memory per room of 100 kept messages (INFO memory
#          used_memory before and after ROOMS rooms x 100 messages of 100 B).
# Each node and redis-server is started here on a free port and stopped at
# the end; every run is bounded (--duration-limit, timeout).
#
# Build first:
#   cargo build --release -p switchboard-tokio -p switchboard-loadgen
# Usage:
#   benches/cluster.sh                  # every scenario, ROUNDS=3
#   SCENARIOS="lat mem" ROUNDS=5 benches/cluster.sh
# Variables: ROUNDS (3), SCENARIOS ("lat tput acks mem"), SUBS (1000),
# RATE (200 msg/s for lat), LAT_MSGS (2000), TPUT_MSGS (20000), ACK_MSGS
# (60000), PUBLISHERS (8), WINDOW (64), ROOMS (1000), OUT (/tmp/sb-cluster),
# SERVER, LOADGEN, REDIS_SERVER, REDIS_CLI.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
SERVER="${SERVER:-$target/release/switchboard}"
LOADGEN="${LOADGEN:-$target/release/switchboard-loadgen}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_CLI="${REDIS_CLI:-redis-cli}"
ROUNDS="${ROUNDS:-3}"
SCENARIOS="${SCENARIOS:-lat tput acks mem}"
SUBS="${SUBS:-1000}"
RATE="${RATE:-200}"
LAT_MSGS="${LAT_MSGS:-2000}"
TPUT_MSGS="${TPUT_MSGS:-20000}"
ACK_MSGS="${ACK_MSGS:-60000}"
PUBLISHERS="${PUBLISHERS:-8}"
WINDOW="${WINDOW:-64}"
ROOMS="${ROOMS:-1000}"
OUT="${OUT:-/tmp/sb-cluster}"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log
ulimit -n 20000 2>/dev/null || true
for b in "$SERVER" "$LOADGEN"; do [[ -x "$b" ]] || { echo "missing $b (build first)" >&2; exit 1; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
redis_port=""
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # Nodes are started from a subshell (not our children): poll, bounded.
    for p in "${pids[@]}"; do
        for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    pids=()
    if [[ -n "$redis_port" ]]; then
        "$REDIS_CLI" -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
        redis_port=""
    fi
}
trap cleanup EXIT

start_redis() {
    redis_port=$(free_port)
    "$REDIS_SERVER" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$OUT" >"$OUT/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        [[ "$("$REDIS_CLI" -p "$redis_port" ping 2>/dev/null)" == PONG ]] && return
        sleep 0.05
    done
    echo "redis-server did not start" >&2; exit 1
}

# start_node CONFIG [--redis URL] -> prints the node's URL; its pid goes to $OUT/last.pid
start_node() {
    local cfg=$1; shift
    local out="$OUT/node.$RANDOM.out"
    "$SERVER" --listen 127.0.0.1:0 --allow-anonymous --config "$cfg" "$@" >"$out" 2>>"$OUT/nodes.err" &
    echo $! >"$OUT/last.pid"
    for _ in $(seq 200); do grep -q '^listening on' "$out" 2>/dev/null && break; sleep 0.05; done
    sed -n 's/^listening on //p' "$out" | head -1
}

cfg="$OUT/bench.toml"
# No rate limit: the acks scenario's publishers each go past 1,000/s.
printf 'rate_limit = 0\n\n[namespaces.default]\nhistory_size = 100\n' >"$cfg"

# One run: LABEL ROUND LOADGEN-ARGS...; nodes and Redis are up already.
gen() {
    local label=$1 round=$2; shift 2
    local f="$OUT/$label.r$round"
    timeout 200 "$LOADGEN" --duration-limit 150 "$@" >"$f.json" 2>"$f.log" || true
    echo "r$round $label: $(head -c 240 "$f.json")" >&2
}

# setup MODE: memory | redis1 | redis2 -> sets A, B (B = A on one node)
setup() {
    cleanup
    case $1 in
        memory) A=$(start_node "$cfg"); pids+=("$(cat "$OUT/last.pid")"); B=$A ;;
        redis1) start_redis
                A=$(start_node "$cfg" --redis "redis://127.0.0.1:$redis_port"); pids+=("$(cat "$OUT/last.pid")"); B=$A ;;
        redis2) start_redis
                A=$(start_node "$cfg" --redis "redis://127.0.0.1:$redis_port"); pids+=("$(cat "$OUT/last.pid")")
                B=$(start_node "$cfg" --redis "redis://127.0.0.1:$redis_port"); pids+=("$(cat "$OUT/last.pid")") ;;
    esac
    [[ -n "$A" && -n "$B" ]] || { echo "a node did not start" >&2; cat "$OUT/nodes.err" >&2; exit 1; }
}

lat_args=(--connections "$SUBS" --messages "$LAT_MSGS" --rate "$RATE" --payload 100)
tput_args=(--connections "$SUBS" --messages "$TPUT_MSGS" --payload 100)

for round in $(seq "$ROUNDS"); do
    for sc in $SCENARIOS; do
        case $sc in
            lat)
                # Alternate: memory, one Redis node, cross-node.
                setup memory; gen lat.memory "$round" --url "$A" "${lat_args[@]}" --room "lat:m$round"
                setup redis1; gen lat.one_node "$round" --url "$A" "${lat_args[@]}" --room "lat:o$round"
                setup redis2; gen lat.cross_node "$round" --url "$B" --publish-url "$A" "${lat_args[@]}" --room "lat:x$round"
                ;;
            tput)
                setup memory; gen tput.memory "$round" --url "$A" "${tput_args[@]}" --publishers 2 --room "t:m$round"
                setup redis1; gen tput.one_node "$round" --url "$A" "${tput_args[@]}" --publishers 2 --room "t:o$round"
                setup redis2; gen tput.two_nodes "$round" --url "$A,$B" --publish-url "$A,$B" "${tput_args[@]}" --publishers 2 --room "t:x$round"
                ;;
            acks)
                setup redis2
                gen acks.redis "$round" --url "$A" --publish-url "$A,$B" --connections 0 \
                    --publishers "$PUBLISHERS" --window "$WINDOW" --messages "$ACK_MSGS" --rooms 64 \
                    --payload 100 --room "a:r$round"
                ;;
            mem)
                [[ $round == 1 ]] || continue
                setup redis1
                used() { "$REDIS_CLI" -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r'; }
                before=$(used)
                gen mem.fill 1 --url "$A" --connections 0 --publishers 4 --window 64 \
                    --messages $((ROOMS * 100)) --rooms "$ROOMS" --payload 100 --room "m:r"
                after=$(used)
                keys=$("$REDIS_CLI" -p "$redis_port" dbsize | tr -d '\r')
                python3 - "$before" "$after" "$ROOMS" "$keys" >"$OUT/mem.r1.json" <<'EOF'
import json, sys
b, a, rooms, keys = map(int, sys.argv[1:])
print(json.dumps({"used_memory_before": b, "used_memory_after": a, "rooms": rooms,
                  "keys": keys, "bytes_per_room": round((a - b) / rooms)}))
EOF
                echo "mem: $(cat "$OUT/mem.r1.json")" >&2
                ;;
            *) echo "unknown scenario $sc" >&2; exit 2 ;;
        esac
    done
done
cleanup

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, os, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(label):
    rs = []
    for r in range(1, rounds + 1):
        p = os.path.join(out, f"{label}.r{r}.json")
        try:
            with open(p) as f:
                rs.append(json.load(f))
        except Exception:
            pass
    return rs
def get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return None
        d = d[k]
    return d
def med(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    return (fmt.format(m) + f" ({fmt.format(min(vals))}–{fmt.format(max(vals))})") if len(vals) > 1 else fmt.format(m)
def ok(rs):
    return "yes" if rs and all(get(r, "publish", "check", "nothing_lost") for r in rs) else "NO"
print(f"rounds: {rounds}; medians (min–max)")
print()
print("| latency, 1 publisher | p50 ms | p99 ms | nothing lost |")
print("| --- | --- | --- | --- |")
for label in ("lat.memory", "lat.one_node", "lat.cross_node"):
    rs = load(label)
    if rs:
        print(f"| {label[4:]} | {med([get(r,'publish','latency_ms','p50') for r in rs], '{:.3f}')} | "
              f"{med([get(r,'publish','latency_ms','p99') for r in rs], '{:.3f}')} | {ok(rs)} |")
one, cross = load("lat.one_node"), load("lat.cross_node")
if one and cross:
    for p in ("p50", "p99"):
        d = [get(c,'publish','latency_ms',p) - get(o,'publish','latency_ms',p) for o, c in zip(one, cross)
             if get(c,'publish','latency_ms',p) is not None and get(o,'publish','latency_ms',p) is not None]
        print(f"cross-node adds ({p}, per round): {med(d, '{:+.3f}')} ms")
print()
print("| throughput | delivered/s | nothing lost |")
print("| --- | --- | --- |")
base = None
for label in ("tput.memory", "tput.one_node", "tput.two_nodes"):
    rs = load(label)
    if rs:
        v = [get(r, 'publish', 'delivered_per_sec') for r in rs]
        print(f"| {label[5:]} | {med(v, '{:,.0f}')} | {ok(rs)} |")
o, t = load("tput.one_node"), load("tput.two_nodes")
if o and t:
    rat = [get(b,'publish','delivered_per_sec') / get(a,'publish','delivered_per_sec') for a, b in zip(o, t)
           if get(a,'publish','delivered_per_sec')]
    print(f"two nodes / one node (per round): {med(rat, '{:.2f}')}")
m = load("tput.memory")
if m and t:
    rat = [get(b,'publish','delivered_per_sec') / get(a,'publish','delivered_per_sec') for a, b in zip(m, t)
           if get(a,'publish','delivered_per_sec')]
    print(f"two nodes / in-memory one node (per round): {med(rat, '{:.2f}')}")
rs = load("acks.redis")
if rs:
    print()
    print("| acked publishes, one Redis | acked/s | ack p50 ms | ack p99 ms | errors |")
    print("| --- | --- | --- | --- | --- |")
    errs = {}
    for r in rs:
        for k, v in (get(r, 'publish', 'publish_errors') or {}).items():
            errs[k] = errs.get(k, 0) + v
    print(f"| {get(rs[0],'publish','publishers')} publishers × window {get(rs[0],'publish','window')} | "
          f"{med([get(r,'publish','acked_per_sec') for r in rs], '{:,.0f}')} | "
          f"{med([get(r,'publish','ack_latency_ms','p50') for r in rs], '{:.2f}')} | "
          f"{med([get(r,'publish','ack_latency_ms','p99') for r in rs], '{:.2f}')} | {errs or 'none'} |")
rs = load("mem")
if rs:
    r = rs[0]
    print()
    print(f"Redis memory: {r['bytes_per_room']:,} bytes per room of 100 kept messages of 100 B "
          f"({r['rooms']} rooms, used_memory {r['used_memory_before']:,} -> {r['used_memory_after']:,}, {r['keys']} keys)")
EOF
