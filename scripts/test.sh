#!/usr/bin/env bash
# Switchboard's test command: installs what the tests need (only when it is
# missing), then runs formatting, lints, the no_std/wasm builds and every test.
#
#   scripts/test.sh            (from any directory)
#
# Honours CARGO_TARGET_DIR when the caller set it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---------------------------------------------------------------- helpers ---
if [[ -t 1 ]]; then
    BOLD=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' RESET=$'\033[0m'
else
    BOLD='' RED='' GREEN='' RESET=''
fi

header() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '%serror:%s %s\n' "$RED" "$RESET" "$*" >&2
    exit 1
}
SUMMARY=()
step() {
    header "$*"
    local start=$SECONDS
    if ! "$@"; then
        printf '\n%sFAILED:%s %s\n' "$RED" "$RESET" "$*" >&2
        exit 1
    fi
    local took=$((SECONDS - start))
    printf '%s    ok%s (%ss)\n' "$GREEN" "$RESET" "$took"
    SUMMARY+=("$(printf '%5ss  %s' "$took" "$*")")
}

# ------------------------------------------------------------ toolchain -----
header "checking toolchain"
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust (https://rustup.rs) and make sure cargo is on PATH"
note "$(cargo --version)"
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    note "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
fi

# ----------------------------------------------------- system packages ------
# package name -> the command it provides
declare -A PROVIDES=(
    [redis-server]=redis-server
    [chromium]=chromium
    [chromium-driver]=chromedriver
    [npm]=npm
)
missing=()
for pkg in redis-server chromium chromium-driver npm; do
    if ! command -v "${PROVIDES[$pkg]}" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

header "checking system packages (redis-server, chromium, chromium-driver, npm)"
if ((${#missing[@]} == 0)); then
    note "all present"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    note "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    for pkg in "${missing[@]}"; do
        command -v "${PROVIDES[$pkg]}" >/dev/null 2>&1 ||
            die "installed $pkg but ${PROVIDES[$pkg]} is still not on PATH"
    done
else
    die "missing: ${missing[*]}. Install them first, e.g. \`sudo apt-get install ${missing[*]}\` (this script installs them itself only when run as root with apt-get)"
fi

# ------------------------------------------------------ rustup targets ------
header "checking rust targets and components"
if command -v rustup >/dev/null 2>&1; then
    installed_targets=$(rustup target list --installed)
    for target in thumbv7em-none-eabihf wasm32-unknown-unknown; do
        if grep -qx "$target" <<<"$installed_targets"; then
            note "target $target: present"
        else
            note "target $target: adding"
            rustup target add "$target"
        fi
    done
    installed_components=$(rustup component list --installed)
    for component in rustfmt clippy; do
        if grep -q "^$component" <<<"$installed_components"; then
            note "component $component: present"
        else
            note "component $component: adding"
            rustup component add "$component"
        fi
    done
    # The fuzz targets (fuzz/) need a nightly toolchain for libFuzzer.
    if rustup toolchain list | grep -q '^nightly'; then
        note "toolchain nightly (fuzzing): present"
    else
        note "toolchain nightly (fuzzing): installing"
        rustup toolchain install nightly --profile minimal
    fi
else
    note "rustup not found: assuming the targets thumbv7em-none-eabihf, wasm32-unknown-unknown and rustfmt, clippy are installed"
fi

# ------------------------------------------------------- browser package ----
# wasm-bindgen-cli of the version in Cargo.lock, wasm-opt and tsc (npm), in a
# cache so that they are built or fetched once.
header "checking the browser package's tools"
while IFS='=' read -r name value; do
    note "$name=$value"
    [[ $name == TSC ]] && export SWITCHBOARD_TSC=$value
done < <(bash scripts/build-wasm.sh --tools-only)

# ------------------------------------------------------------------ steps ---
# The core is sans-I/O: nothing under core/src reads a clock.
no_clock_in_core() {
    if grep -rnE 'Instant::now|SystemTime' core/src; then
        echo "core/src must not read a clock: time is an argument" >&2
        return 1
    fi
}
step no_clock_in_core
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
# ------------------------------------------------------- side by side -----
# Suites that share nothing but the CPU run at the same time, each in its own
# target directory (so no cargo waits on another's lock) and with its output
# in its own log, printed whole when the suite ends. A suite's steps still run
# one after another and the first failure ends it.
BASE_TARGET=${CARGO_TARGET_DIR:-$PWD/target}
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
side_by_side() {
    local names=("$@") pids=() failed=()
    for name in "${names[@]}"; do
        header "started: $name (side by side with the others of: ${names[*]})"
        ("$name") >"$LOGS/$name.log" 2>&1 &
        pids+=($!)
    done
    local i
    for i in "${!names[@]}"; do
        local name=${names[$i]}
        if wait "${pids[$i]}"; then
            header "finished: $name"
        else
            header "${RED}FAILED:${RESET} $name"
            failed+=("$name")
        fi
        cat "$LOGS/$name.log"
        # The suite's own step timings, for the summary at the end.
        while IFS= read -r line; do
            SUMMARY+=("$line")
        done < <(sed -n 's/^SUMMARY: //p' "$LOGS/$name.log")
    done
    if ((${#failed[@]})); then
        printf '\n%sFAILED:%s %s\n' "$RED" "$RESET" "${failed[*]}" >&2
        exit 1
    fi
}
# In a suite (a subshell), `step` records its timing as a line of the log.
suite_step() {
    step "$@"
    printf 'SUMMARY: %s\n' "${SUMMARY[-1]}"
}

# The no_std, device and browser builds of the core, and the core's tests
# without its default features.
embedded_builds() {
    export CARGO_TARGET_DIR=$BASE_TARGET/embedded
    suite_step cargo build -p switchboard-core --no-default-features --target thumbv7em-none-eabihf
    # The device build: JSON, history and HS256 without an allocator.
    suite_step cargo build -p switchboard-core --no-default-features --features hs256 --target thumbv7em-none-eabihf
    suite_step cargo clippy -p switchboard-core --no-default-features --all-targets -- -D warnings
    suite_step cargo build -p switchboard-core --no-default-features --features alloc,json --target wasm32-unknown-unknown
    suite_step cargo clippy -p switchboard-wasm --target wasm32-unknown-unknown -- -D warnings
    suite_step cargo test -p switchboard-core --no-default-features
    # The embassy hub (issue 13): the library for a Cortex-M4F/M7, and the
    # Nucleo-F767ZI firmware (its own workspace: target-specific dependencies).
    suite_step cargo build -p switchboard-embassy --target thumbv7em-none-eabihf
    suite_step cargo clippy -p switchboard-embassy --target thumbv7em-none-eabihf -- -D warnings
    suite_step firmware
}
firmware() {
    (cd examples/embassy-stm32 && cargo build --release --locked)
}

# Every fuzz target for a short, fixed time on its committed corpus.
fuzzing() {
    export CARGO_TARGET_DIR=$BASE_TARGET/fuzz
    suite_step bash fuzz/run.sh "${FUZZ_SECONDS:-15}"
}

side_by_side embedded_builds fuzzing
# The embassy host tests (tests/tests/embassy.rs, the `embassy_runtime`
# cases of the conformance and hostile suites) create network namespaces:
# they need root, and fail (never skip) without it; they run in the
# workspace tests below.

# The browser test must not skip silently here.
export SWITCHBOARD_REQUIRE_BROWSER=1
step cargo test --workspace

header "all checks passed"
printf '    %s\n' "${SUMMARY[@]}"
