#!/usr/bin/env bash
# Runs Switchboard and the reference peers (../shared/peers) side by side
# with the same load generator, in one run, on this machine, and prints a
# markdown table of medians over rounds (with the spread) plus every round's
# figures; the raw JSON lines go to $OUT (default /tmp/sb-compare). See
# benches/README.md.
#
#   ../shared/peers/setup.sh /tmp/switchboard-peers     # once
#   nice -n 19 cargo build --release -p switchboard-tokio -p switchboard-smol -p switchboard-loadgen
#   benches/compare.sh [PEERS_DIR]
#   ROUNDS=3 benches/compare.sh                          # medians of 3 rounds, servers alternating
#   SERVER_CPUS=0 LOADGEN_CPUS=1 benches/compare.sh      # server pinned to CPU 0, loadgen to CPU 1
#   SERVER_CPUS="0 0,1" benches/compare.sh               # scaling: every server on 1 core, then on 2
#   SERVER_BEFORE=/path/to/old/switchboard ONLY="switchboard-before switchboard" benches/compare.sh
#                                  # a before/after comparison of one change
#   SCENARIOS="fan1k lat1k" benches/compare.sh           # a subset of the scenarios
#
# Environment: ONLY (servers; default "switchboard switchboard-smol rust_bare uws";
# also switchboard+history, switchboard-before, node_ws, fastapi), ROUNDS (1),
# SCENARIOS ("idle10k fan1k fan10k lat1k"), SERVER_CPUS / LOADGEN_CPUS (taskset
# CPU lists; SERVER_CPUS may hold several space-separated lists, each a full pass
# labelled server@cpus), SERVER, SERVER_SMOL, LOADGEN (binaries), OUT.
#
# Loopback only; every load run is bounded (--duration-limit) and every
# server it starts is killed on exit. sockudo is not driven: it speaks the
# Pusher protocol and publishes through a signed HTTP API (see README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${1:-/tmp/switchboard-peers}"
SERVER="${SERVER:-$here/target/release/switchboard}"
SERVER_SMOL="${SERVER_SMOL:-$here/target/release/switchboard-smol}"
LOADGEN="${LOADGEN:-$here/target/release/switchboard-loadgen}"
OUT="${OUT:-/tmp/sb-compare}"
ONLY="${ONLY:-switchboard switchboard-smol rust_bare uws}"
ROUNDS="${ROUNDS:-1}"
SCENARIOS="${SCENARIOS:-idle10k fan1k fan10k lat1k}"
SERVER_CPUS="${SERVER_CPUS:-}"
LOADGEN_CPUS="${LOADGEN_CPUS:-}"
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true

for b in "$LOADGEN"; do [[ -x "$b" ]] || { echo "missing $b (build first)" >&2; exit 1; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pid=""
cleanup() { [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=""; }
trap cleanup EXIT

# The plain broadcast peers echo what is sent: s = sequence, t = send time.
generic=(--hello none --publish-template '{"s":$S,"t":$T,"p":"$P"}')

start() { # name cpus -> sets url, pid, spid, gen (loadgen protocol args)
    local name=$1 cpus=$2 port
    local pin=()
    [[ -n "$cpus" ]] && pin=(taskset -c "$cpus")
    port=$(free_port)
    case $name in
        switchboard)
            "${pin[@]}" "$SERVER" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard-smol)
            "${pin[@]}" "$SERVER_SMOL" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard-before)
            # SERVER_BEFORE: a build of an earlier commit, to compare in one run.
            "${pin[@]}" "${SERVER_BEFORE:?set SERVER_BEFORE to an earlier switchboard binary}" --listen "127.0.0.1:$port" --allow-anonymous >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        switchboard+history)
            printf 'allow_anonymous = true\n[namespaces.bench]\nhistory_size = 100\n' >"$OUT/history.toml"
            "${pin[@]}" "$SERVER" --listen "127.0.0.1:$port" --config "$OUT/history.toml" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws"; gen=() ;;
        rust_bare) "${pin[@]}" "$peers/rust_bare/run.sh" "$port" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/"; gen=("${generic[@]}") ;;
        uws) "${pin[@]}" "$peers/uws/run.sh" "$port" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/"; gen=("${generic[@]}") ;;
        node_ws) "${pin[@]}" "$peers/node_ws/run.sh" "$port" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/"; gen=("${generic[@]}") ;;
        fastapi) "${pin[@]}" "$peers/fastapi_seed/run.sh" "$port" >/dev/null 2>"$OUT/$name.err" &
            url="ws://127.0.0.1:$port/ws/chat"; gen=("${generic[@]}") ;;
        *) echo "unknown server $name" >&2; exit 2 ;;
    esac
    pid=$!
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    # A launcher that does not exec leaves the server as its child: measure that.
    local child; child=$(pgrep -P "$pid" | head -1 || true)
    spid=${child:-$pid}
    sleep 0.5
}

run() { # label name cpus round scenario args...
    local label=$1 name=$2 cpus=$3 round=$4 scenario=$5; shift 5
    local lpin=()
    [[ -n "$LOADGEN_CPUS" ]] && lpin=(taskset -c "$LOADGEN_CPUS")
    start "$name" "$cpus"
    local f="$OUT/$label.$scenario.r$round"
    "${lpin[@]}" "$LOADGEN" --url "$url" --server-pid "$spid" "${gen[@]}" "$@" >"$f.json" 2>"$f.log" || true
    cleanup
    echo "r$round $label $scenario: $(head -c 300 "$f.json")" >&2
}

scenario_args() {
    case $1 in
        idle10k) echo "--connections 10000 --idle-secs 5 --duration-limit 120" ;;
        fan1k) echo "--connections 1000 --messages 2000 --payload 100 --duration-limit 120" ;;
        fan10k) echo "--connections 10000 --messages 200 --payload 100 --duration-limit 180" ;;
        lat1k) echo "--connections 1000 --messages 200 --rate 20 --duration-limit 60" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

cpu_sets=("")
[[ -n "$SERVER_CPUS" ]] && read -r -a cpu_sets <<<"$SERVER_CPUS"
labels=()
for cpus in "${cpu_sets[@]}"; do
    for name in $ONLY; do labels+=("$name${cpus:+@$cpus}"); done
done

for round in $(seq "$ROUNDS"); do
    for cpus in "${cpu_sets[@]}"; do
        for name in $ONLY; do
            for sc in $SCENARIOS; do
                # shellcheck disable=SC2046
                run "$name${cpus:+@$cpus}" "$name" "$cpus" "$round" "$sc" $(scenario_args "$sc")
            done
        done
    done
done

echo "server CPUs: ${SERVER_CPUS:-any}; loadgen CPUs: ${LOADGEN_CPUS:-any}; rounds: $ROUNDS; $(date -u +%FT%TZ)"
python3 - "$OUT" "$ROUNDS" "${labels[@]}" <<'PY'
import json, sys, os, statistics
out, rounds, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def get(n, s, r):
    try:
        return json.load(open(os.path.join(out, f"{n}.{s}.r{r}.json")))
    except Exception:
        return None
def runs(n, s):
    return [get(n, s, r) for r in range(1, rounds + 1)]
def pick(d, *path):
    for k in path:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d
def med(vals, f, unit=""):
    v = [x for x in vals if x is not None]
    if not v: return "—"
    m = statistics.median(v)
    s = f.format(m)
    if len(v) > 1:
        s += f" ({f.format(min(v))}–{f.format(max(v))})"
    return s + unit
def rate(d):
    x = pick(d, "publish", "delivered_per_sec")
    return x / 1e6 if x else None
def complete(ds):
    bad = []
    for d in ds:
        if not d or "publish" not in d: continue
        p = d["publish"]; c = p.get("check", {})
        if p["delivered"] != p["expected"] or not c.get("nothing_lost", False):
            bad.append(f'{p["delivered"]}/{p["expected"]}, lost {c.get("lost")}, dup {c.get("duplicated")}, ooo {c.get("out_of_order")}')
    return bad
print()
print(f"Medians of {rounds} round(s); (min–max) when more than one.")
print()
print("| server | RSS/idle conn @10K | 1K subs × 2,000 msgs: delivered/s | 10K subs × 200 msgs | p50 / p99 @ 1K subs, 20 msg/s | server CPU µs/delivery 1K / 10K / trickle | loadgen CPU µs/delivery 1K / 10K | nothing lost |")
print("|---|---|---|---|---|---|---|---|")
problems = []
for n in labels:
    idle, f1, f10, lat = (runs(n, s) for s in ("idle10k", "fan1k", "fan10k", "lat1k"))
    rss = med([pick(d, "server", "rss_per_connection_kib") for d in idle], "{:.2f}", " KiB")
    r1 = med([rate(d) for d in f1], "{:.2f}", " M")
    r10 = med([rate(d) for d in f10], "{:.2f}", " M")
    p50 = med([pick(d, "publish", "latency_ms", "p50") for d in lat], "{:.1f}")
    p99 = med([pick(d, "publish", "latency_ms", "p99") for d in lat], "{:.1f}")
    cpu = " / ".join(med([pick(d, "server", "cpu_us_per_delivery") for d in ds], "{:.2f}") for ds in (f1, f10, lat))
    lcpu = " / ".join(med([pick(d, "loadgen", "cpu_us_per_delivery") for d in ds], "{:.2f}") for ds in (f1, f10))
    bad = []
    for sc, ds in (("fan1k", f1), ("fan10k", f10), ("lat1k", lat)):
        for b in complete(ds):
            bad.append(f"{sc}: {b}")
    ran = any(d for d in f1 + f10 + lat)
    ok = ("yes" if not bad else f"NO ({len(bad)} runs)") if ran else "—"
    problems += [f"{n} {b}" for b in bad]
    print(f"| {n} | {rss} | {r1} | {r10} | {p50} / {p99} ms | {cpu} | {lcpu} | {ok} |")
if rounds > 1:
    print()
    print("Every round (delivered M/s at 1K, at 10K; trickle p99 ms; server CPU µs/delivery 1K):")
    print()
    print("| server | " + " | ".join(f"round {r}" for r in range(1, rounds + 1)) + " |")
    print("|---|" + "---|" * rounds)
    for n in labels:
        cells = []
        for r in range(1, rounds + 1):
            f1, f10, lat = get(n, "fan1k", r), get(n, "fan10k", r), get(n, "lat1k", r)
            fmt = lambda x, f: f.format(x) if x is not None else "—"
            cells.append(f'{fmt(rate(f1), "{:.2f}")}, {fmt(rate(f10), "{:.2f}")}; {fmt(pick(lat, "publish", "latency_ms", "p99"), "{:.1f}")}; {fmt(pick(f1, "server", "cpu_us_per_delivery"), "{:.2f}")}')
        print(f"| {n} | " + " | ".join(cells) + " |")
for p in problems:
    print(f"incomplete: {p}")
PY
