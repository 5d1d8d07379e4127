#!/usr/bin/env bash
# Throughput comparison: smtpkit bench vs Postfix's smtp-source -d vs lettre 0.11 (pooled
# AsyncSmtpTransport) vs nodemailer (pool) vs aiosmtplib, all against Postfix's smtp-sink on
# loopback, with and without an added round-trip time, with and without PIPELINING offered by
# the sink; plus smtpkit's Mailer path (`bench --mailer`) in the C=4 rows, and implicit-TLS
# rows through stunnel in front of the same sink.
#
#   bash bench/compare.sh            # builds, runs everything, prints the tables
#
# Knobs (environment): RUNS (3), SIZE (2048), COUNT (20000), LETTRE_COUNT_C1/_C4/_C16
# (200/400/1600: lettre as shipped runs at ~22 msgs/s per connection here, see RESULTS.md),
# PEER_COUNT (4000: nodemailer and aiosmtplib at no added RTT; they run at 1,000-3,000 msgs/s),
# RTT_MS (20), RTT_COUNT_C1/_C4/_C16 (80/160/400), PIPES ("yes no": sink with and without
# PIPELINING), MAILER (1), MAILER_TASKS (64), MAILER_COUNT (10000), MAILER_RTT_COUNT (400),
# TLS (1), TLS_CONCURRENCIES ("1 16"), TLS_COUNT (10000: smtpkit), TLS_PEER_COUNT (3000:
# nodemailer, aiosmtplib), TLS_LETTRE_COUNT_C1/_C16 (200/1600), TLS_PROBE_SESSIONS (40),
# OUT (raw results folder), SKIP_BUILD=1.
#
# Peers, pinned here and never dependencies of smtpkit:
# * lettre-peer/ (Cargo.lock), with lettre's rustls backend for the TLS rows;
# * nodemailer-peer/ (package.json + package-lock.json; `npm ci` is run when node_modules is
#   missing; needs node and npm);
# * aiosmtplib-peer/ (requirements.txt, installed into aiosmtplib-peer/.venv with
#   /usr/bin/python3 -m venv when the venv is missing; needs python3-venv).
# The TLS rows need stunnel (Debian: `apt-get install stunnel4`) and openssl; without stunnel
# they are skipped with a message (TLS=0 skips them on purpose).
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
PROBE=$BENCH_TARGET/release/tls-resume-probe
NODE=${NODE:-node}
NM_DIR=$HERE/nodemailer-peer
AIO_DIR=$HERE/aiosmtplib-peer
AIO_PY=$AIO_DIR/.venv/bin/python
STUNNEL=${STUNNEL:-$(command -v stunnel4 || command -v stunnel || true)}

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
PEER_COUNT=${PEER_COUNT:-4000}
read -r -a PIPES <<<"${PIPES-yes no}" # PIPES="" (set but empty): no plain rows, TLS rows only
MAILER=${MAILER:-1}
MAILER_TASKS=${MAILER_TASKS:-64}
MAILER_COUNT=${MAILER_COUNT:-10000}
MAILER_RTT_COUNT=${MAILER_RTT_COUNT:-400}
TLS=${TLS:-1}
read -r -a TLS_CONCURRENCIES <<<"${TLS_CONCURRENCIES:-1 16}"
TLS_COUNT=${TLS_COUNT:-10000}
TLS_PEER_COUNT=${TLS_PEER_COUNT:-3000}
TLS_LETTRE_COUNT_C1=${TLS_LETTRE_COUNT_C1:-200}
TLS_LETTRE_COUNT_C16=${TLS_LETTRE_COUNT_C16:-1600}
TLS_PROBE_SESSIONS=${TLS_PROBE_SESSIONS:-40}
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
command -v "$NODE" >/dev/null || { log "missing node (nodemailer peer)"; exit 1; }
if [[ $TLS == 1 && -z $STUNNEL ]]; then
    log "stunnel not found (apt-get install stunnel4): skipping the TLS rows"
    TLS=0
fi

# ---- build ---------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building smtpkit (release) into $MAIN_TARGET"
    (cd "$MAIN" && CARGO_TARGET_DIR=$MAIN_TARGET cargo build --release)
    log "building lettre-peer and delay-proxy into $BENCH_TARGET"
    (cd "$HERE/lettre-peer" && CARGO_TARGET_DIR=$BENCH_TARGET cargo build --release)
    if [[ $TLS == 1 ]]; then
        log "building tls-resume-probe (smtpkit's library) into $BENCH_TARGET"
        (cd "$HERE/tls-resume-probe" && CARGO_TARGET_DIR=$BENCH_TARGET cargo build --release)
    fi
fi
# The script-language peers install into their own folders (not built by SKIP_BUILD's builds).
if [[ ! -d $NM_DIR/node_modules/nodemailer ]]; then
    log "installing nodemailer-peer (npm ci, pinned by package-lock.json)"
    (cd "$NM_DIR" && npm ci --no-audit --no-fund)
fi
if [[ ! -x $AIO_PY ]]; then
    log "installing aiosmtplib-peer into $AIO_DIR/.venv (pinned by requirements.txt)"
    "$PY" -m venv "$AIO_DIR/.venv"
    "$AIO_DIR/.venv/bin/pip" install --require-virtualenv -q -r "$AIO_DIR/requirements.txt"
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
cleanup_all() {
    cleanup
    [[ -n $TLS_DIR && -d $TLS_DIR ]] && rm -rf "$TLS_DIR"
    return 0
}
trap cleanup_all EXIT
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

SECURITY=none # "tls" while the TLS rows run; recorded with every run
# measure PIPE RTT C RUN CLIENT COUNT TIMEOUT -- CMD...
measure() {
    local pipe=$1 rtt=$2 c=$3 run=$4 client=$5 count=$6 timeout=$7
    shift 8
    local line
    line=$("$PY" "$HERE/timed.py" "$client" "$timeout" "$count" -- "$@")
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(pipelining=sys.argv[2], rtt_ms=int(sys.argv[3]), c=int(sys.argv[4]), run=int(sys.argv[5]), security=sys.argv[6]); print(json.dumps(r))' \
        "$line" "$pipe" "$rtt" "$c" "$run" "$SECURITY" >>"$RAW"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-16s rc=%-3s %9.1f msgs/s  %7.1f us/msg CPU  (%d msgs, %.2f s)" % (r["label"], r["rc"], r["msgs_per_sec"], r["cpu_us_per_msg"] or 0, r["count"], r["wall_s"]))' "$line" >&2
}

run_row() { # pipe rtt c
    local pipe=$1 rtt=$2 c=$3 n nl np nm port run k i
    if ((rtt == 0)); then
        n=$COUNT
        port=$SINK_PORT
        case $c in 1) nl=$LETTRE_COUNT_C1 ;; 4) nl=$LETTRE_COUNT_C4 ;; *) nl=$LETTRE_COUNT_C16 ;; esac
        np=$PEER_COUNT
        nm=$MAILER_COUNT
    else
        case $c in 1) n=$RTT_COUNT_C1 ;; 4) n=$RTT_COUNT_C4 ;; *) n=$RTT_COUNT_C16 ;; esac
        nl=$n
        np=$n
        nm=$MAILER_RTT_COUNT
        port=$PROXY_PORT
    fi
    local clients=(smtpkit smtp-source lettre lettre-nodelay nodemailer aiosmtplib)
    ((rtt > 0)) && clients+=(smtpkit-builtin-rtt)
    # The Mailer path: MAILER_TASKS tasks through one pool of C=4 sessions, beside direct C=4.
    [[ $MAILER == 1 && $c == 4 ]] && clients+=(smtpkit-mailer)
    log "row: sink pipelining=$pipe rtt=${rtt}ms C=$c (msgs: $n, lettre pooled: $nl, nodemailer/aiosmtplib: $np, mailer: $nm); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
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
            nodemailer)
                measure "$pipe" "$rtt" "$c" "$run" nodemailer "$np" 300 -- \
                    "$NODE" "$NM_DIR/peer.js" --host 127.0.0.1 --port "$port" --count "$np" --concurrency "$c" --size "$SIZE" ;;
            aiosmtplib)
                measure "$pipe" "$rtt" "$c" "$run" aiosmtplib "$np" 300 -- \
                    "$AIO_PY" "$AIO_DIR/peer.py" --host 127.0.0.1 --port "$port" --count "$np" --concurrency "$c" --size "$SIZE" ;;
            smtpkit-mailer)
                measure "$pipe" "$rtt" "$c" "$run" smtpkit-mailer "$nm" 300 -- \
                    "$SMTPKIT" bench --mailer --tasks "$MAILER_TASKS" --host 127.0.0.1 --port "$port" --count "$nm" --concurrency "$c" --size "$SIZE" --json ;;
            esac
        done
    done
}

# ---- implicit TLS: stunnel in front of the sink --------------------------------------------
TLS_DIR= STUNNEL_PID= TLS_PORT=
make_tls_material() { # a throwaway CA and a server certificate for 127.0.0.1 / localhost
    TLS_DIR=$(mktemp -d /tmp/smtpkit-compare-tls.XXXXXX)
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout ca.key -out ca.pem -subj "/CN=smtpkit compare.sh throwaway CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost"
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >>"$OUT/tls-setup.log" 2>&1
}

start_stunnel() { # sink port
    TLS_PORT=$(free_port)
    cat >"$TLS_DIR/stunnel.conf" <<EOF
foreground = yes
pid =
debug = warning
[smtps]
accept = 127.0.0.1:$TLS_PORT
connect = 127.0.0.1:$1
cert = $TLS_DIR/server.pem
key = $TLS_DIR/server.key
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
    "$STUNNEL" "$TLS_DIR/stunnel.conf" >>"$OUT/stunnel.log" 2>&1 &
    STUNNEL_PID=$!
    PIDS+=("$STUNNEL_PID")
    wait_listening "$TLS_PORT"
}

run_tls_row() { # c
    local c=$1 run k i nl
    case $c in 1) nl=$TLS_LETTRE_COUNT_C1 ;; *) nl=$TLS_LETTRE_COUNT_C16 ;; esac
    local ca=$TLS_DIR/ca.pem
    local clients=(smtpkit nodemailer lettre aiosmtplib)
    log "TLS row: stunnel -> smtp-sink (pipelining=yes) C=$c (smtpkit: $TLS_COUNT, nodemailer/aiosmtplib: $TLS_PEER_COUNT, lettre: $nl); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((run = 1; run <= RUNS; run++)); do
        for ((i = 0; i < ${#clients[@]}; i++)); do
            k=${clients[$(((i + run - 1) % ${#clients[@]}))]}
            case $k in
            smtpkit)
                measure yes 0 "$c" "$run" smtpkit "$TLS_COUNT" 300 -- \
                    "$SMTPKIT" bench --host 127.0.0.1 --port "$TLS_PORT" --security tls --ca-file "$ca" --count "$TLS_COUNT" --concurrency "$c" --size "$SIZE" --json ;;
            nodemailer)
                measure yes 0 "$c" "$run" nodemailer "$TLS_PEER_COUNT" 300 -- \
                    "$NODE" "$NM_DIR/peer.js" --host 127.0.0.1 --port "$TLS_PORT" --tls --ca-file "$ca" --count "$TLS_PEER_COUNT" --concurrency "$c" --size "$SIZE" ;;
            lettre)
                measure yes 0 "$c" "$run" lettre "$nl" 300 -- \
                    "$PEER" --host 127.0.0.1 --port "$TLS_PORT" --tls --ca-file "$ca" --count "$nl" --concurrency "$c" --size "$SIZE" ;;
            aiosmtplib)
                measure yes 0 "$c" "$run" aiosmtplib "$TLS_PEER_COUNT" 300 -- \
                    "$AIO_PY" "$AIO_DIR/peer.py" --host 127.0.0.1 --port "$TLS_PORT" --tls --ca-file "$ca" --count "$TLS_PEER_COUNT" --concurrency "$c" --size "$SIZE" ;;
            esac
        done
    done
}

log "raw results: $RAW; $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
for pipe in "${PIPES[@]}"; do
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
if [[ $TLS == 1 ]]; then
    make_tls_material
    start_sink
    start_stunnel "$SINK_PORT"
    log "TLS: stunnel ($("$STUNNEL" -version 2>&1 | head -n1 | cut -d' ' -f1-2)) on 127.0.0.1:$TLS_PORT -> smtp-sink (pipelining=yes) on 127.0.0.1:$SINK_PORT"
    SECURITY=tls
    for c in "${TLS_CONCURRENCIES[@]}"; do
        run_tls_row "$c"
    done
    if [[ -x $PROBE ]]; then
        # smtpkit's full vs resumed handshakes, sessions one after another (bench opens its
        # sessions all at once, so none of them resumes).
        for ((run = 1; run <= RUNS; run++)); do
            measure yes 0 1 "$run" tls-resume-probe "$TLS_PROBE_SESSIONS" 120 -- \
                "$PROBE" --host 127.0.0.1 --port "$TLS_PORT" --ca-file "$TLS_DIR/ca.pem" --sessions "$TLS_PROBE_SESSIONS"
        done
    else
        log "no $PROBE: no full-vs-resumed handshake probe"
    fi
    SECURITY=none
    stop_pid "$STUNNEL_PID"
    stop_pid "$SINK_PID"
fi
cleanup

elapsed=$(($(date +%s) - started_at))

# ---- tables --------------------------------------------------------------------------------
"$PY" - "$RAW" "$elapsed" <<'PYEOF' | tee "$OUT/table.md"
import json, statistics, sys
from collections import defaultdict

raw, elapsed = sys.argv[1], int(sys.argv[2])
runs = defaultdict(list)
tls_runs = defaultdict(list)
failures = []
for line in open(raw):
    r = json.loads(line)
    if r["rc"] != 0:
        failures.append(r)
        continue
    if r.get("security", "none") == "tls":
        tls_runs[(r["c"], r["label"])].append(r)
        continue
    key = (r["pipelining"], r["rtt_ms"], r["c"], r["label"])
    runs[key].append(r)

def med(key, field, src=runs):
    vals = [r[field] for r in src.get(key, []) if r.get(field) is not None]
    return statistics.median(vals) if vals else None

def client_med(key, field, src=runs):
    vals = [r["client"][field] for r in src.get(key, [])
            if r.get("client") and r["client"].get(field) is not None]
    return statistics.median(vals) if vals else None

def client_sum(key, field, src=runs):
    vals = [r["client"].get(field) or 0 for r in src.get(key, []) if r.get("client")]
    return sum(vals) if vals else None

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
print("New peers, same runs: nodemailer (pool: true, maxConnections = C, all messages queued at")
print("once, raw message) and aiosmtplib (C connections, each sending its share); no TLS, no auth.\n")
print("| sink PIPELINING | RTT ms | C | nodemailer msg/s | aiosmtplib msg/s | smtpkit / nodemailer | smtpkit / aiosmtplib | nodemailer CPU µs/msg | aiosmtplib CPU µs/msg | smtpkit CPU µs/msg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for p, rtt, c in rows:
    k = lambda who: (p, rtt, c, who)
    s, nm, ai = med(k("smtpkit"), "msgs_per_sec"), med(k("nodemailer"), "msgs_per_sec"), med(k("aiosmtplib"), "msgs_per_sec")
    print(f"| {p} | {rtt} | {c} | {f(nm)} | {f(ai)} | {ratio(s, nm)} | {ratio(s, ai)} | "
          f"{f(med(k('nodemailer'), 'cpu_us_per_msg'), 1)} | {f(med(k('aiosmtplib'), 'cpu_us_per_msg'), 1)} | "
          f"{f(med(k('smtpkit'), 'cpu_us_per_msg'), 1)} |")
print()
mrows = [r for r in rows if (r[0], r[1], r[2], "smtpkit-mailer") in runs]
if mrows:
    print("Mailer path: `smtpkit bench --mailer --tasks T --concurrency 4` (T tasks calling")
    print("Mailer::send_message through one provider with a pool of 4 sessions, one try each)")
    print("beside direct `smtpkit bench --concurrency 4` in the same runs.\n")
    print("| sink PIPELINING | RTT ms | C (pool) | tasks | Mailer msg/s | direct smtpkit msg/s | Mailer / direct | Mailer / smtp-source | Mailer / nodemailer | Mailer CPU µs/msg | Mailer p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, rtt, c in mrows:
        k = lambda who: (p, rtt, c, who)
        m, s = med(k("smtpkit-mailer"), "msgs_per_sec"), med(k("smtpkit"), "msgs_per_sec")
        tasks = client_med(k("smtpkit-mailer"), "tasks")
        print(f"| {p} | {rtt} | {c} | {f(tasks)} | {f(m)} | {f(s)} | {ratio(m, s)} | "
              f"{ratio(m, med(k('smtp-source'), 'msgs_per_sec'))} | {ratio(m, med(k('nodemailer'), 'msgs_per_sec'))} | "
              f"{f(med(k('smtpkit-mailer'), 'cpu_us_per_msg'), 1)} | {f(client_med(k('smtpkit-mailer'), 'p50_ms'), 2)} |")
    print()
if tls_runs:
    print("Implicit TLS: stunnel (TLS 1.3, ECDSA P-256 certificate from a throwaway CA) in front of")
    print("smtp-sink (PIPELINING offered), every client verifying the certificate against that CA.")
    print("Handshakes: smtpkit bench's own measure (TlsInfo::handshake: ClientHello to the end), medians")
    print("over the runs of each run's median; n = handshakes in all runs.\n")
    print("| C | smtpkit msg/s | nodemailer msg/s | lettre msg/s | aiosmtplib msg/s | smtpkit / nodemailer | smtpkit / lettre | smtpkit / aiosmtplib | smtpkit CPU µs/msg | nodemailer CPU µs/msg | full handshakes: n, median ms | resumed handshakes: n, median ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for c in sorted({k[0] for k in tls_runs if k[1] != "tls-resume-probe"}):
        k = lambda who: (c, who)
        s = med(k("smtpkit"), "msgs_per_sec", tls_runs)
        nm = med(k("nodemailer"), "msgs_per_sec", tls_runs)
        le = med(k("lettre"), "msgs_per_sec", tls_runs)
        ai = med(k("aiosmtplib"), "msgs_per_sec", tls_runs)
        hs = lambda n, ms: f"{f(client_sum(k('smtpkit'), n, tls_runs))}, {f(client_med(k('smtpkit'), ms, tls_runs), 2)}"
        print(f"| {c} | {f(s)} | {f(nm)} | {f(le, 1)} | {f(ai)} | {ratio(s, nm)} | {ratio(s, le)} | {ratio(s, ai)} | "
              f"{f(med(k('smtpkit'), 'cpu_us_per_msg', tls_runs), 1)} | {f(med(k('nodemailer'), 'cpu_us_per_msg', tls_runs), 1)} | "
              f"{hs('tls_full_handshakes', 'tls_full_handshake_ms')} | {hs('tls_resumed_handshakes', 'tls_resumed_handshake_ms')} |")
    print()
    probes = [r["client"] for r in tls_runs.get((1, "tls-resume-probe"), []) if r.get("client")]
    if probes:
        print("smtpkit's handshakes, sessions opened one after another (tls-resume-probe: connect,")
        print("EHLO, QUIT; `shared` = one TlsConnector for all sessions, as a pool's sessions share one;")
        print("`fresh` = a new connector per session). Medians over the runs.\n")
        print("| connector | sessions per run | first handshake ms | later full: n, median ms | later resumed: n, median ms |")
        print("|---|---:|---:|---|---|")
        md = lambda xs: statistics.median(xs) if xs else None
        for mode in ("shared", "fresh"):
            ms = [p[mode] for p in probes if mode in p]
            print(f"| {mode} | {probes[0]['sessions']} | {f(md([m['first_ms'] for m in ms if m['first_ms'] is not None]), 2)} | "
                  f"{sum(m['later_full'] for m in ms)}, {f(md([m['later_full_median_ms'] for m in ms if m['later_full_median_ms'] is not None]), 2)} | "
                  f"{sum(m['later_resumed'] for m in ms)}, {f(md([m['later_resumed_median_ms'] for m in ms if m['later_resumed_median_ms'] is not None]), 2)} |")
        print()
n = sum(len(v) for v in runs.values()) + sum(len(v) for v in tls_runs.values())
print(f"{n} successful runs, {len(failures)} failed runs; measuring took {elapsed} s "
      f"({elapsed // 60} min {elapsed % 60} s) including the builds.")
for r in failures:
    print(f"FAILED: {r['label']} security={r.get('security', 'none')} pipelining={r['pipelining']} rtt={r['rtt_ms']} C={r['c']} run={r['run']} rc={r['rc']} {r.get('stderr', '')[:200]!r}")
PYEOF
log "done in ${elapsed} s; raw results and table in $OUT"
