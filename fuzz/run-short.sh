#!/usr/bin/env bash
# Builds every fuzz target and runs each one briefly: a smoke test for CI or
# before a commit, not a fuzzing campaign.
#
# Usage: fuzz/run-short.sh [seconds per target]    (default 10, or $FUZZ_SECONDS)
#
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. New inputs
# the fuzzer finds go to a scratch directory, so the checked-in seed corpora
# (fuzz/corpus/<target>/seed-*) stay as they are. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit non-zero.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-10}}"
sanitizer="${FUZZ_SANITIZER:-address}"
cd "$(dirname "$0")/.."

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it" >&2
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build --sanitizer "$sanitizer"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for target in $(cargo +nightly fuzz list); do
    echo "== $target: fuzzing for ${seconds}s" >&2
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    if cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" \
        "$scratch/$target" "fuzz/corpus/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -Eo '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
        rate="$(grep -Eo 'exec/s: [0-9]+' "$log" | tail -n 1 || true)"
        cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)"
        summary+=("$target: ${runs:-? runs}s, ${rate:-exec/s: ?}, ${cov:-cov: ?}")
    else
        status=$?
        echo "!! $target failed (exit $status); the end of its log:" >&2
        tail -n 60 "$log" >&2
        failed+=("$target")
        summary+=("$target: FAILED (exit $status)")
    fi
done

echo "== summary" >&2
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "crashed: ${failed[*]}; inputs are in fuzz/artifacts/" >&2
    exit 1
fi
