#!/usr/bin/env bash
# Outbox scale-out (issue 16): how much faster N `smtpkit worker` processes sharing one
# PostgreSQL outbox drain a queue than one worker, when every SMTP round trip costs an added
# RTT (the delay proxy in front of Postfix's smtp-sink). Latency-bound, so 4 workers should
# reach >= 3x one worker even on 2 cores.
#
#   bash bench/outbox_scale.sh       # builds, runs 1 and 4 workers RUNS times each, prints the table
#
# Knobs (environment): RUNS (3), COUNT (1500 messages per run), WORKERS ("1 4": the first is the
# baseline every other count is compared with), CONCURRENCY (4: each worker's --concurrency and
# its provider's pool.max_connections), RTT_MS (20), BATCH (500 messages per
# `notify --queue`, one transaction each), SIZE (2048: body bytes, roughly), PG_FSYNC (on),
# RUN_TIMEOUT (600 s per worker before it is killed), OUT (raw results folder), SKIP_BUILD=1,
# MAIN_TARGET / BENCH_TARGET (cargo target folders; MAIN_TARGET defaults to $CARGO_TARGET_DIR,
# else ./target; BENCH_TARGET to bench/lettre-peer/target, as in compare.sh).
#
# Everything runs on loopback in temporary folders and is stopped on exit: a private
# PostgreSQL cluster (initdb + pg_ctl on a free port; run as the user `postgres` through
# `runuser` when this script runs as root, as tests/support/postgres.rs does), smtp-sink, and
# lettre-peer's `delay-proxy` (RTT_MS added per round trip, as in compare.sh).
#
# Per run and per worker count: a fresh database (`CREATE DATABASE` through psql, then `smtpkit outbox migrate`), COUNT
# messages queued with `smtpkit notify --queue` (a generated workflow of BATCH email steps, each
# run is one enqueue_many transaction; timed on its own), then N `smtpkit worker --until-empty
# --json` started together and timed from the first spawn to the last exit. The database's
# `queue stats --json` must then say COUNT sent. The worker counts alternate which goes first
# from run to run, and each run's ratio is taken against the baseline of the same run.
set -euo pipefail

started_at=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(dirname "$HERE")
PY=/usr/bin/python3
SINK=/usr/sbin/smtp-sink
MAIN_TARGET=${MAIN_TARGET:-${CARGO_TARGET_DIR:-$MAIN/target}}
BENCH_TARGET=${BENCH_TARGET:-$HERE/lettre-peer/target}
SMTPKIT=$MAIN_TARGET/release/smtpkit
PROXY=$BENCH_TARGET/release/delay-proxy

RUNS=${RUNS:-3}
COUNT=${COUNT:-1500}
read -r -a WORKER_COUNTS <<<"${WORKERS:-1 4}"
CONCURRENCY=${CONCURRENCY:-4}
RTT_MS=${RTT_MS:-20}
BATCH=${BATCH:-500}
SIZE=${SIZE:-2048}
PG_FSYNC=${PG_FSYNC:-on}
OUT=${OUT:-$HERE/results/run-outbox-scale-$(date +%Y%m%d-%H%M%S)}
RUN_TIMEOUT=${RUN_TIMEOUT:-600} # seconds a worker run may take before it is killed

mkdir -p "$OUT"
RAW=$OUT/raw.jsonl
: >"$RAW"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

for tool in "$SINK" "$PY"; do
    [[ -x $tool ]] || { log "missing $tool"; exit 1; }
done
((COUNT % BATCH == 0)) || { log "COUNT ($COUNT) must be a multiple of BATCH ($BATCH)"; exit 64; }

# PostgreSQL's binaries: PATH, else Debian's /usr/lib/postgresql/*/bin (newest first).
# The directory must hold pg_ctl, postgres and psql beside initdb (not a wrapper's).
PG_BIN=
if command -v initdb >/dev/null 2>&1; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
    [[ -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] || PG_BIN=
fi
if [[ -z $PG_BIN ]]; then
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr); do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/psql ]] && { PG_BIN=$d; break; }
    done
fi
[[ -n $PG_BIN ]] || { log "no initdb (PostgreSQL) in PATH or /usr/lib/postgresql/*/bin"; exit 1; }
# PostgreSQL refuses to run as root.
AS_PG=()
if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || { log "running as root and there is no user postgres"; exit 1; }
    AS_PG=(runuser -u postgres --)
fi

# ---- build ---------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building smtpkit (release) into $MAIN_TARGET"
    (cd "$MAIN" && CARGO_TARGET_DIR=$MAIN_TARGET cargo build --release)
    log "building delay-proxy into $BENCH_TARGET"
    (cd "$HERE/lettre-peer" && CARGO_TARGET_DIR=$BENCH_TARGET cargo build --release --bin delay-proxy)
fi
for bin in "$SMTPKIT" "$PROXY"; do
    [[ -x $bin ]] || { log "missing $bin (build first)"; exit 1; }
done

# ---- processes and folders we make, stopped and removed on exit -----------------------------
PIDS=()
WORK=
PGDIR=
PG_STARTED=0
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # A TERM that lands between fork and exec can be lost: KILL what is left after 10 s.
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if ((PG_STARTED)); then
        (cd "$PGDIR" && "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 30 stop) >/dev/null 2>&1 || true
        PG_STARTED=0
    fi
    [[ -n $PGDIR && -d $PGDIR ]] && rm -rf "$PGDIR"
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    PGDIR= WORK=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smtpkit-outbox-scale.XXXXXX")
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/smtpkit-outbox-scale-pg.XXXXXX")

# ---- PostgreSQL -------------------------------------------------------------------------------
PG_USER=smtpkit
PG_PASSWORD=outbox-bench-$RANDOM$RANDOM
printf '%s' "$PG_PASSWORD" >"$PGDIR/pw"
chmod 700 "$PGDIR"
((${#AS_PG[@]})) && chown -R postgres: "$PGDIR"
(cd "$PGDIR" && "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -U "$PG_USER" --pwfile "$PGDIR/pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync) >"$OUT/initdb.log" 2>&1 ||
    { cat "$OUT/initdb.log" >&2; exit 1; }
PG_PORT=
for _ in 1 2 3; do
    port=$(free_port)
    if (cd "$PGDIR" && "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w -t 60 -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $PGDIR -c fsync=$PG_FSYNC -c max_connections=200 -c shared_buffers=128MB" \
        start) >/dev/null 2>&1; then
        PG_PORT=$port
        PG_STARTED=1
        break
    fi
done
[[ -n $PG_PORT ]] || { log "pg_ctl start failed"; cat "$PGDIR/log" >&2; exit 1; }
PG_VERSION=$("$PG_BIN/postgres" --version)
# Client tools over the cluster's socket (trust for local connections).
psql_admin() { "$PG_BIN/psql" -h "$PGDIR" -p "$PG_PORT" -U "$PG_USER" -d postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
db_url() { printf 'postgres://%s:%s@127.0.0.1:%s/%s' "$PG_USER" "$PG_PASSWORD" "$PG_PORT" "$1"; }
log "PostgreSQL ($PG_VERSION, fsync=$PG_FSYNC) on 127.0.0.1:$PG_PORT"

# ---- smtp-sink and the delay proxy ----------------------------------------------------------
SINK_PORT=$(free_port)
"$SINK" -u nobody "127.0.0.1:$SINK_PORT" 256 >>"$OUT/sink.log" 2>&1 &
PIDS+=("$!")
wait_listening "$SINK_PORT"
: >"$WORK/proxy.port" # exists before head reads it (the redirect below is the child's)
"$PROXY" --target "127.0.0.1:$SINK_PORT" --rtt-ms "$RTT_MS" --max-seconds 7200 >"$WORK/proxy.port" 2>>"$OUT/proxy.log" &
PIDS+=("$!")
PROXY_PORT=
for ((i = 0; i < 100; i++)); do
    PROXY_PORT=$(head -n1 "$WORK/proxy.port")
    [[ -n $PROXY_PORT ]] && break
    sleep 0.05
done
[[ -n $PROXY_PORT ]] || { log "delay proxy did not start"; exit 1; }
wait_listening "$PROXY_PORT"
log "smtp-sink on 127.0.0.1:$SINK_PORT, delay proxy (${RTT_MS} ms) on 127.0.0.1:$PROXY_PORT"

# ---- configuration: the provider (through the proxy) and a workflow of BATCH email steps -------
CFG=$WORK/smtpkit.yaml
cat >"$CFG" <<EOF
providers:
  sink:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: $PROXY_PORT
      from: bench@example.com
      security: none
      auth: none
      pool: {max_connections: $CONCURRENCY}
outbox:
  url: '$(db_url postgres)'
EOF
FLOW=$WORK/workflow.yaml
"$PY" - "$FLOW" "$BATCH" "$SIZE" <<'PYEOF'
import sys
path, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = "The quick brown fox jumps over the lazy dog, again and again, for the outbox bench."
body = "\n".join([line] * max(1, size // (len(line) + 1)))
with open(path, "w") as f:
    f.write("workflows:\n  - name: bench\n    steps:\n")
    for i in range(batch):
        f.write(
            "      - task: notify\n        type: email\n        config:\n"
            "          provider: sink\n"
            f"          subject: \"outbox scale bench {i}\"\n"
            f"          to: [a{i}@example.com, b{i}@example.com]\n"
            "          body:\n            text: |\n"
        )
        for l in body.split("\n"):
            f.write(f"              {l}\n")
PYEOF

# ---- one measured run -------------------------------------------------------------------------
DB_SEQ=0
# measure N RUN: fresh database, enqueue COUNT, N workers until empty; one JSON line to $RAW.
measure() {
    local n=$1 run=$2 db url t0 t1 e0 e1 i rc pids=() rcs=() load
    DB_SEQ=$((DB_SEQ + 1))
    db=scale_${DB_SEQ}
    url=$(db_url "$db")
    psql_admin -c "CREATE DATABASE $db" >/dev/null
    "$SMTPKIT" outbox migrate --config "$CFG" --outbox "$url" --json >"$WORK/migrate.json"
    e0=$EPOCHREALTIME
    for ((i = 0; i < COUNT / BATCH; i++)); do
        "$SMTPKIT" notify --config "$CFG" --config "$FLOW" --queue --outbox "$url" --json >"$WORK/enqueue.json"
    done
    e1=$EPOCHREALTIME
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$EPOCHREALTIME
    for ((i = 0; i < n; i++)); do
        timeout -s KILL "$RUN_TIMEOUT" "$SMTPKIT" worker --config "$CFG" --outbox "$url" \
            --concurrency "$CONCURRENCY" --until-empty --json \
            >"$WORK/worker-$i.json" 2>"$WORK/worker-$i.err" &
        pids+=("$!")
    done
    PIDS+=("${pids[@]}")
    for ((i = 0; i < n; i++)); do
        rc=0
        wait "${pids[$i]}" || rc=$?
        rcs+=("$rc")
    done
    t1=$EPOCHREALTIME
    local keep=() p q found
    for p in "${PIDS[@]}"; do
        found=0
        for q in "${pids[@]}"; do [[ $p == "$q" ]] && found=1; done
        ((found)) || keep+=("$p")
    done
    PIDS=("${keep[@]}")
    "$SMTPKIT" queue stats --config "$CFG" --outbox "$url" --json >"$WORK/stats.json"
    # Worker errors, if any, kept for the log (the per-delivery lines are not).
    for ((i = 0; i < n; i++)); do
        grep -v -E '^(sent|deferred|failed|expired|unknown) [0-9]+ <' "$WORK/worker-$i.err" |
            sed "s/^/[run $run, $n workers, worker $i] /" >>"$OUT/workers.log" || true
    done
    "$PY" - "$n" "$run" "$COUNT" "$e0" "$e1" "$t0" "$t1" "$load" "${rcs[*]}" "$WORK" <<'PYEOF' | tee -a "$RAW" >"$WORK/line.json"
import json, sys
n, run, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
e0, e1, t0, t1 = (float(x) for x in sys.argv[4:8])
load, rcs, work = float(sys.argv[8]), [int(x) for x in sys.argv[9].split()], sys.argv[10]
workers = []
for i in range(n):
    try:
        workers.append(json.load(open(f"{work}/worker-{i}.json")))
    except Exception as e:  # a worker that printed nothing (killed)
        workers.append({"error": str(e)})
stats = json.load(open(f"{work}/stats.json"))
sent = stats.get("by_state", {}).get("sent", 0)
wall = t1 - t0
print(json.dumps({
    "workers": n, "run": run, "count": count, "wall_s": round(wall, 4),
    "msgs_per_sec": round(count / wall, 2),
    "enqueue_s": round(e1 - e0, 4), "enqueue_msgs_per_sec": round(count / (e1 - e0), 1),
    "rcs": rcs, "delivered_per_worker": [w.get("delivered") for w in workers],
    "sent": sent, "by_state": stats.get("by_state"), "total": stats.get("total"),
    "ok": all(r == 0 for r in rcs) and sent == count and stats.get("total") == count,
    "loadavg1_before": load,
}))
PYEOF
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   run %d, %d worker(s): %8.1f msgs/s (%d msgs, %.2f s; per worker %s; sent %d; rc %s)%s; enqueue %.0f msgs/s" % (r["run"], r["workers"], r["msgs_per_sec"], r["count"], r["wall_s"], r["delivered_per_worker"], r["sent"], r["rcs"], "" if r["ok"] else "  NOT ALL SENT", r["enqueue_msgs_per_sec"]))' "$WORK/line.json" >&2
    psql_admin -c "DROP DATABASE $db" >/dev/null
}

log "raw results: $RAW; $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
log "COUNT=$COUNT per run, worker counts ${WORKER_COUNTS[*]}, --concurrency $CONCURRENCY each, RTT ${RTT_MS} ms, RUNS=$RUNS"
for ((run = 1; run <= RUNS; run++)); do
    # Interleaved: the worker count that goes first rotates from run to run.
    for ((i = 0; i < ${#WORKER_COUNTS[@]}; i++)); do
        n=${WORKER_COUNTS[$(((i + run - 1) % ${#WORKER_COUNTS[@]}))]}
        measure "$n" "$run"
    done
done
cleanup

elapsed=$(($(date +%s) - started_at))

# ---- table ----------------------------------------------------------------------------------
"$PY" - "$RAW" "$elapsed" "${WORKER_COUNTS[0]}" <<'PYEOF' | tee "$OUT/table.md"
import json, statistics, sys
from collections import defaultdict

raw, elapsed, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(raw)]
by = defaultdict(dict)  # workers -> run -> record
for r in rows:
    by[r["workers"]][r["run"]] = r
runs = sorted({r["run"] for r in rows})
bad = [r for r in rows if not r["ok"]]

def f(v, d=1):
    return "—" if v is None else f"{v:,.{d}f}"

print("msgs/s = messages / wall time from the first worker's spawn to the last one's exit;")
print("ratio = this count's msgs/s / the baseline's in the same run.\n")
print(f"| workers | runs | msgs/s per run | msgs/s median | ratio vs {base} per run | ratio median | enqueue msgs/s median |")
print("|---:|---:|---|---:|---|---:|---:|")
for n in sorted(by):
    rs = [by[n][k] for k in runs if k in by[n]]
    rates = [r["msgs_per_sec"] for r in rs]
    ratios = [by[n][k]["msgs_per_sec"] / by[base][k]["msgs_per_sec"]
              for k in runs if k in by[n] and k in by[base]]
    enq = statistics.median(r["enqueue_msgs_per_sec"] for r in rs)
    print(f"| {n} | {len(rs)} | {', '.join(f(x) for x in rates)} | {f(statistics.median(rates))} | "
          f"{', '.join(f'{x:.2f}×' for x in ratios)} | {statistics.median(ratios):.2f}× | {f(enq, 0)} |")
print()
print(f"{len(rows)} runs, {len(bad)} with messages not all sent or a worker failing; "
      f"the script took {elapsed} s ({elapsed // 60} min {elapsed % 60} s) including any build.")
for r in bad:
    print(f"NOT OK: run {r['run']}, {r['workers']} workers: rc {r['rcs']}, by_state {r['by_state']}")
PYEOF
log "done in ${elapsed} s; raw results and table in $OUT"
