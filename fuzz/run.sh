#!/usr/bin/env bash
# Fuzzes every target of this directory for a fixed time and fails on any crash.
#
#   FUZZ_SECONDS=20 bash fuzz/run.sh            # what CI runs
#
# Environment:
#   FUZZ_SECONDS      seconds per target (default 20)
#   FUZZ_TARGETS      space-separated subset of targets (default: all)
#   FUZZ_SANITIZER    cargo-fuzz sanitizer (default none: smtpkit has no `unsafe`, and without
#                     ASan the targets run 3-5x faster; `address` also works on stable and
#                     is the one to use for a stack trace of a libFuzzer timeout)
#   CARGO_TARGET_DIR  where to build (default fuzz/target)
#
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# New corpus entries land in fuzz/corpus/<target>/ (ignored by git: only seed-* is committed);
# a crashing input lands in fuzz/artifacts/<target>/ and its stack trace is printed here.
set -euo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
ALL_TARGETS=(reply_parser capabilities dot_stuffer config client_session client_bdat)
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR/.."

# The cargo of a root rustup install may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
FUZZ_FLAGS=(--sanitizer "$FUZZ_SANITIZER")

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smtpkit-fuzz.XXXXXX")"
started=$SECONDS

echo "==> building fuzz targets (sanitizer: $FUZZ_SANITIZER)"
cargo fuzz build "${FUZZ_FLAGS[@]}"
built=$SECONDS

failed=()
summaries=()
for target in "${TARGETS[@]}"; do
    log="$LOG_DIR/$target.log"
    echo "==> fuzzing $target for ${FUZZ_SECONDS}s (log: $log)"
    # Inputs that failed before are replayed first (extra corpus; new units go to the first).
    corpora=("fuzz/corpus/$target")
    mkdir -p "${corpora[0]}"
    if [ -d "fuzz/artifacts-found/$target" ]; then
        corpora+=("fuzz/artifacts-found/$target")
    fi
    status=0
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "${corpora[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -aEo 'cov: [0-9]+' "$log" | tail -n 1 || true)
    corp=$(grep -aEo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)
    if [ "$status" -eq 0 ]; then
        summaries+=("$(printf '%-15s ok      %s runs, %s, %s' "$target" "${runs:-?}" "${cov:-cov: ?}" "${corp:-corp: ?}")")
        continue
    fi
    failed+=("$target")
    # What went wrong: a panic's message, or libFuzzer's / ASan's own error line.
    first=$(grep -a -n -m 1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|^ERROR: ' "$log" | cut -d: -f1 || true)
    kind="see log"
    if [ -n "$first" ]; then
        kind=$(sed -n "${first}p" "$log")
        case "$kind" in
            *"panicked at"*) kind="panic: $(sed -n "$((first + 1))p" "$log")" ;;
        esac
    fi
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    summaries+=("$(printf '%-15s FAILED  exit %s: %s; input: %s' "$target" "$status" "${kind:0:160}" "${artifact:-none written}")")
    echo "---- $target failed; the failure in its log:"
    if [ -n "$first" ]; then
        # From the error to cargo-fuzz's own exit message (its backtrace is noise).
        tail -n +"$first" "$log" | grep -av '^"' | sed '/^Error: Fuzz target exited/,$d' | head -n 150 || true
    else
        tail -n 80 "$log"
    fi
    echo "----"
done

echo
echo "==> fuzz summary (build $((built - started))s, total $((SECONDS - started))s, ${FUZZ_SECONDS}s per target)"
printf '%s\n' "${summaries[@]}"
echo "fuzz: $((${#TARGETS[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found a problem in: ${failed[*]} (logs in $LOG_DIR)"
    exit 1
fi
