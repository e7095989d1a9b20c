#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 20) on its committed corpus.
#
#   fuzz/run.sh [SECONDS]
#
# Needs the nightly toolchain (cargo-fuzz builds with sanitizer flags) and
# installs cargo-fuzz when it is missing. Builds all targets once, then runs
# them one after the other with a single job each. New corpus entries go to
# a scratch directory, not to fuzz/corpus/ (minimize and commit them by
# hand, see fuzz/README.md). Honours CARGO_TARGET_DIR; otherwise builds in
# fuzz/target. Exits non-zero when a target crashes (the input is saved under
# fuzz/artifacts/<target>/) or does not build.
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS]   (a positive whole number, default 20)" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"

if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "error: the nightly toolchain is missing; cargo-fuzz needs it." >&2
    echo "       install it with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it (cargo install cargo-fuzz)..." >&2
    cargo install cargo-fuzz
fi

targets=(client_frame_json client_frame_postcard server_frame upgrade ws_reader hub_ops)

dict_for() {
    case "$1" in
        client_frame_json | server_frame) echo "-dict=dicts/json.dict" ;;
        upgrade) echo "-dict=dicts/upgrade.dict" ;;
        *) echo "" ;;
    esac
}

echo "== building ${#targets[@]} targets (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "$scratch/$t"
    echo "== $t: ${seconds}s"
    # shellcheck disable=SC2046
    if cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 $(dict_for "$t") \
        >"$scratch/$t.log" 2>&1; then
        grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec' "$scratch/$t.log" |
            sed "s/^/   /"
    else
        failed+=("$t")
        echo "!! $t failed:" >&2
        grep -E -A12 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$scratch/$t.log" >&2 ||
            tail -n 40 "$scratch/$t.log" >&2
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with" >&2
    echo "        cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>)" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a crash"
