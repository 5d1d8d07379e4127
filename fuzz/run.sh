#!/usr/bin/env bash
# Fuzzes every target of this directory for a fixed time and fails on any crash.
#
#   FUZZ_SECONDS=20 bash fuzz/run.sh            # what CI runs
#
# Environment:
#   FUZZ_SECONDS      seconds per target (default 20)
#   FUZZ_TARGETS      space-separated subset of targets (default: all)
#   FUZZ_SANITIZER    cargo-fuzz sanitizer (default none: smtpkit has no `unsafe`, and without
#                     ASan the fuzzer runs about twice as fast; `address` also works on stable)
#   CARGO_TARGET_DIR  where to build (default fuzz/target)
#
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# New corpus entries land in fuzz/corpus/<target>/ (ignored by git: only seed-* is committed);
# a crashing input lands in fuzz/artifacts/<target>/ and its stack trace is printed here.
set -euo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
ALL_TARGETS=(reply_parser capabilities dot_stuffer config client_session)
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
    status=0
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)
    corp=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)
    if [ "$status" -eq 0 ]; then
        summaries+=("$(printf '%-15s ok      %s runs, %s, %s' "$target" "${runs:-?}" "${cov:-cov: ?}" "${corp:-corp: ?}")")
    else
        kind=$(grep -Eo 'deadly signal|panicked at|ERROR: libFuzzer: [a-z-]+|out-of-memory|ERROR: AddressSanitizer: [a-z-]+' "$log" | head -n 1 || true)
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        summaries+=("$(printf '%-15s FAILED  exit %s: %s; input: %s' "$target" "$status" "${kind:-see log}" "${artifact:-see log}")")
        failed+=("$target")
        echo "---- $target failed; end of its log:"
        tail -n 80 "$log"
        echo "----"
    fi
done

echo
echo "==> fuzz summary (build $((built - started))s, total $((SECONDS - started))s, ${FUZZ_SECONDS}s per target)"
printf '%s\n' "${summaries[@]}"
echo "fuzz: $((${#TARGETS[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found a problem in: ${failed[*]} (logs in $LOG_DIR)"
    exit 1
fi
