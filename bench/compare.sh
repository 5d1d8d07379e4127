#!/usr/bin/env bash
# Throughput comparison: smtpkit bench vs Postfix's smtp-source -d vs lettre 0.11 (pooled
# AsyncSmtpTransport), all against Postfix's smtp-sink on loopback, with and without an added
# round-trip time, with and without PIPELINING offered by the sink.
#
#   bash bench/compare.sh            # builds, runs everything, prints the tables
#
# Knobs (environment): RUNS (3), SIZE (2048), COUNT (20000), LETTRE_COUNT_C1/_C4/_C16
# (200/400/1600: lettre as shipped runs at ~22 msgs/s per connection here, see RESULTS.md),
# RTT_MS (20), RTT_COUNT_C1/_C4/_C16 (80/160/400), OUT (raw results folder), SKIP_BUILD=1.
#
# Every client run goes through bench/timed.py: wall time from spawn to exit and the child's
# CPU (wait4 rusage), measured the same way for all clients, each run bounded by a timeout.
# The RTT rows send every client through the same delay proxy (lettre-peer's `delay-proxy`
# binary, a delay line per direction); smtpkit's own `bench --rtt` is an extra column.
set -euo pipefail

started_at=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(dirname "$HERE")
PY=/usr/bin/python3
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source
MAIN_TARGET=${MAIN_TARGET:-$MAIN/target}
BENCH_TARGET=${BENCH_TARGET:-$HERE/lettre-peer/target}
SMTPKIT=$MAIN_TARGET/release/smtpkit
PEER=$BENCH_TARGET/release/lettre-peer
PROXY=$BENCH_TARGET/release/delay-proxy

RUNS=${RUNS:-3}
SIZE=${SIZE:-2048}
COUNT=${COUNT:-20000}
LETTRE_COUNT_C1=${LETTRE_COUNT_C1:-200}
LETTRE_COUNT_C4=${LETTRE_COUNT_C4:-400}
LETTRE_COUNT_C16=${LETTRE_COUNT_C16:-1600}
RTT_MS=${RTT_MS:-20}
RTT_COUNT_C1=${RTT_COUNT_C1:-80}
RTT_COUNT_C4=${RTT_COUNT_C4:-160}
RTT_COUNT_C16=${RTT_COUNT_C16:-400}
CONCURRENCIES=(1 4 16)
OUT=${OUT:-$HERE/results/run-$(date +%Y%m%d-%H%M%S)}
# smtp-source's -l is the payload without its headers (From, To, Date, Message-Id and the
# blank line: 113 bytes here), so this makes its messages about SIZE bytes on the wire.
SOURCE_PAYLOAD=$((SIZE - 113))

mkdir -p "$OUT"
RAW=$OUT/raw.jsonl
: >"$RAW"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

for tool in "$SINK" "$SOURCE" "$PY"; do
    [[ -x $tool ]] || { log "missing $tool"; exit 1; }
done

# ---- build ---------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building smtpkit (release) into $MAIN_TARGET"
    (cd "$MAIN" && CARGO_TARGET_DIR=$MAIN_TARGET cargo build --release)
    log "building lettre-peer and delay-proxy into $BENCH_TARGET"
    (cd "$HERE/lettre-peer" && CARGO_TARGET_DIR=$BENCH_TARGET cargo build --release)
fi
for bin in "$SMTPKIT" "$PEER" "$PROXY"; do
    [[ -x $bin ]] || { log "missing $bin (build first)"; exit 1; }
done

# ---- processes we start, stopped on exit ---------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() { # port: bounded, 100 tries of 0.05 s
    local port=$1 i
    for ((i = 0; i < 100; i++)); do
        if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    log "nothing listens on 127.0.0.1:$port"
    return 1
}

SINK_PID= SINK_PORT= PROXY_PID= PROXY_PORT=
start_sink() { # extra smtp-sink flags...
    SINK_PORT=$(free_port)
    "$SINK" -u nobody "$@" "127.0.0.1:$SINK_PORT" 256 >>"$OUT/sink.log" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_listening "$SINK_PORT"
}

start_proxy() { # target port
    local portfile=$OUT/proxy.port i
    : >"$portfile"
    "$PROXY" --target "127.0.0.1:$1" --rtt-ms "$RTT_MS" --max-seconds 3600 >"$portfile" 2>>"$OUT/proxy.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for ((i = 0; i < 100; i++)); do
        PROXY_PORT=$(head -n1 "$portfile")
        [[ -n $PROXY_PORT ]] && break
        sleep 0.05
    done
    [[ -n $PROXY_PORT ]] || { log "delay proxy did not start"; return 1; }
    wait_listening "$PROXY_PORT"
}

# measure PIPE RTT C RUN CLIENT COUNT TIMEOUT -- CMD...
measure() {
    local pipe=$1 rtt=$2 c=$3 run=$4 client=$5 count=$6 timeout=$7
    shift 8
    local line
    line=$("$PY" "$HERE/timed.py" "$client" "$timeout" "$count" -- "$@")
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(pipelining=sys.argv[2], rtt_ms=int(sys.argv[3]), c=int(sys.argv[4]), run=int(sys.argv[5])); print(json.dumps(r))' \
        "$line" "$pipe" "$rtt" "$c" "$run" >>"$RAW"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-16s rc=%-3s %9.1f msgs/s  %7.1f us/msg CPU  (%d msgs, %.2f s)" % (r["label"], r["rc"], r["msgs_per_sec"], r["cpu_us_per_msg"] or 0, r["count"], r["wall_s"]))' "$line" >&2
}

run_row() { # pipe rtt c
    local pipe=$1 rtt=$2 c=$3 n nl port run k i
    if ((rtt == 0)); then
        n=$COUNT
        port=$SINK_PORT
        case $c in 1) nl=$LETTRE_COUNT_C1 ;; 4) nl=$LETTRE_COUNT_C4 ;; *) nl=$LETTRE_COUNT_C16 ;; esac
    else
        case $c in 1) n=$RTT_COUNT_C1 ;; 4) n=$RTT_COUNT_C4 ;; *) n=$RTT_COUNT_C16 ;; esac
        nl=$n
        port=$PROXY_PORT
    fi
    local clients=(smtpkit smtp-source lettre lettre-nodelay)
    ((rtt > 0)) && clients+=(smtpkit-builtin-rtt)
    log "row: sink pipelining=$pipe rtt=${rtt}ms C=$c (msgs: $n, lettre pooled: $nl); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((run = 1; run <= RUNS; run++)); do
        # Interleaved: one run of each client per round, starting client rotated per round.
        for ((i = 0; i < ${#clients[@]}; i++)); do
            k=${clients[$(((i + run - 1) % ${#clients[@]}))]}
            case $k in
            smtpkit)
                measure "$pipe" "$rtt" "$c" "$run" smtpkit "$n" 300 -- \
                    "$SMTPKIT" bench --host 127.0.0.1 --port "$port" --count "$n" --concurrency "$c" --size "$SIZE" --json ;;
            smtp-source)
                measure "$pipe" "$rtt" "$c" "$run" smtp-source "$n" 300 -- \
                    "$SOURCE" -d -s "$c" -m "$n" -l "$SOURCE_PAYLOAD" "127.0.0.1:$port" ;;
            lettre)
                measure "$pipe" "$rtt" "$c" "$run" lettre "$nl" 300 -- \
                    "$PEER" --host 127.0.0.1 --port "$port" --count "$nl" --concurrency "$c" --size "$SIZE" ;;
            lettre-nodelay)
                measure "$pipe" "$rtt" "$c" "$run" lettre-nodelay "$n" 300 -- \
                    "$PEER" --host 127.0.0.1 --port "$port" --count "$n" --concurrency "$c" --size "$SIZE" --nodelay ;;
            smtpkit-builtin-rtt)
                measure "$pipe" "$rtt" "$c" "$run" smtpkit-builtin-rtt "$n" 300 -- \
                    "$SMTPKIT" bench --host 127.0.0.1 --port "$SINK_PORT" --count "$n" --concurrency "$c" --size "$SIZE" --rtt "$rtt" --json ;;
            esac
        done
    done
}

log "raw results: $RAW; $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
for pipe in yes no; do
    if [[ $pipe == yes ]]; then start_sink; else start_sink -p; fi
    start_proxy "$SINK_PORT"
    log "smtp-sink (pipelining=$pipe) on 127.0.0.1:$SINK_PORT, delay proxy (${RTT_MS} ms) on 127.0.0.1:$PROXY_PORT"
    for rtt in 0 "$RTT_MS"; do
        for c in "${CONCURRENCIES[@]}"; do
            run_row "$pipe" "$rtt" "$c"
        done
    done
    stop_pid "$PROXY_PID"
    stop_pid "$SINK_PID"
done
cleanup

elapsed=$(($(date +%s) - started_at))

# ---- tables --------------------------------------------------------------------------------
"$PY" - "$RAW" "$elapsed" <<'PYEOF' | tee "$OUT/table.md"
import json, statistics, sys
from collections import defaultdict

raw, elapsed = sys.argv[1], int(sys.argv[2])
runs = defaultdict(list)
failures = []
for line in open(raw):
    r = json.loads(line)
    key = (r["pipelining"], r["rtt_ms"], r["c"], r["label"])
    if r["rc"] != 0:
        failures.append(r)
        continue
    runs[key].append(r)

def med(key, field):
    vals = [r[field] for r in runs.get(key, []) if r.get(field) is not None]
    return statistics.median(vals) if vals else None

def self_cpu(key):
    vals = [r["client"]["cpu_us_per_msg"] for r in runs.get(key, [])
            if r.get("client") and r["client"].get("cpu_us_per_msg") is not None]
    return statistics.median(vals) if vals else None

def f(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"

def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}×"

rows = sorted({k[:3] for k in runs}, key=lambda k: (k[0] != "yes", k[1], k[2]))
print("Medians of the runs per cell; msgs/s = messages / wall time from spawn to exit;")
print("CPU = user+sys of the client process (wait4 rusage) per message.\n")
print("| sink PIPELINING | RTT ms | C | smtpkit msg/s | smtp-source msg/s | lettre msg/s | smtpkit / smtp-source | smtpkit / lettre | smtpkit CPU µs/msg | smtp-source CPU µs/msg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for p, rtt, c in rows:
    k = lambda who: (p, rtt, c, who)
    s, src, le = med(k("smtpkit"), "msgs_per_sec"), med(k("smtp-source"), "msgs_per_sec"), med(k("lettre"), "msgs_per_sec")
    print(f"| {p} | {rtt} | {c} | {f(s)} | {f(src)} | {f(le, 1)} | {ratio(s, src)} | {ratio(s, le)} | "
          f"{f(med(k('smtpkit'), 'cpu_us_per_msg'), 1)} | {f(med(k('smtp-source'), 'cpu_us_per_msg'), 1)} |")
print()
print("Extra columns: lettre-nodelay = lettre 0.11's AsyncSmtpConnection over our own TCP_NODELAY")
print("socket (no pool); smtpkit --rtt = smtpkit bench's built-in delay proxy (in-process, so its")
print("CPU is not comparable); 'self' CPU = what the client reports from /proc/self/stat (100 Hz).\n")
print("| sink PIPELINING | RTT ms | C | lettre-nodelay msg/s | smtpkit / lettre-nodelay | smtpkit --rtt (built-in) msg/s | lettre CPU µs/msg | lettre-nodelay CPU µs/msg | smtpkit self CPU µs/msg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for p, rtt, c in rows:
    k = lambda who: (p, rtt, c, who)
    s, ln = med(k("smtpkit"), "msgs_per_sec"), med(k("lettre-nodelay"), "msgs_per_sec")
    b = med(k("smtpkit-builtin-rtt"), "msgs_per_sec")
    print(f"| {p} | {rtt} | {c} | {f(ln)} | {ratio(s, ln)} | {f(b)} | {f(med(k('lettre'), 'cpu_us_per_msg'), 1)} | "
          f"{f(med(k('lettre-nodelay'), 'cpu_us_per_msg'), 1)} | {f(self_cpu(k('smtpkit')), 1)} |")
print()
n = sum(len(v) for v in runs.values())
print(f"{n} successful runs, {len(failures)} failed runs; measuring took {elapsed} s "
      f"({elapsed // 60} min {elapsed % 60} s) including the builds.")
for r in failures:
    print(f"FAILED: {r['label']} pipelining={r['pipelining']} rtt={r['rtt_ms']} C={r['c']} run={r['run']} rc={r['rc']} {r.get('stderr', '')[:200]!r}")
PYEOF
log "done in ${elapsed} s; raw results and table in $OUT"
