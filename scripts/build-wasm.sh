#!/usr/bin/env bash
# Builds the browser package (crate client-wasm) as an npm-style package:
#
#   scripts/build-wasm.sh [--out DIR] [--no-opt] [--tools-only]
#
# Default DIR: server/assets/switchboard-wasm (committed; the hub serves it at
# /switchboard-wasm/ for the example chat page). Installs what it needs when
# missing, into a cache (SWITCHBOARD_CACHE, default ~/.cache/switchboard):
# the wasm32-unknown-unknown target, a wasm-bindgen-cli of exactly the
# version of the wasm-bindgen crate in Cargo.lock, and (with npm) binaryen
# for `wasm-opt -Oz`. Prints the gzipped size of .wasm + .js.
#
# --tools-only installs the tools and prints the paths, nothing else.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=server/assets/switchboard-wasm
OPT=1
TOOLS_ONLY=0
while (($#)); do
    case $1 in
    --out) OUT=$2; shift 2 ;;
    --no-opt) OPT=0; shift ;;
    --tools-only) TOOLS_ONLY=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

CACHE=${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}
BINARYEN_VERSION=132.0.0
TYPESCRIPT_VERSION=5.9.3
NICE=(nice -n 19)

log() { printf '    %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools ---
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[[ -n $WB_VERSION ]] || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }

if command -v rustup >/dev/null 2>&1 &&
    ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown >&2
fi

WB_ROOT=$CACHE/wasm-bindgen-$WB_VERSION
WASM_BINDGEN=$WB_ROOT/bin/wasm-bindgen
if [[ ! -x $WASM_BINDGEN ]] || [[ $("$WASM_BINDGEN" --version) != "wasm-bindgen $WB_VERSION" ]]; then
    log "installing wasm-bindgen-cli $WB_VERSION into $WB_ROOT"
    # --locked first; its lock file has named a yanked or missing release
    # before (0.2.130: webpki-roots), so fall back to a fresh resolution.
    "${NICE[@]}" cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked --root "$WB_ROOT" >&2 ||
        "${NICE[@]}" cargo install wasm-bindgen-cli --version "$WB_VERSION" --root "$WB_ROOT" >&2
fi

NODE_TOOLS=$CACHE/node-tools
WASM_OPT=
TSC=
if command -v npm >/dev/null 2>&1; then
    if [[ ! -x $NODE_TOOLS/node_modules/.bin/wasm-opt || ! -x $NODE_TOOLS/node_modules/.bin/tsc ]]; then
        log "installing binaryen@$BINARYEN_VERSION and typescript@$TYPESCRIPT_VERSION from npm into $NODE_TOOLS"
        mkdir -p "$NODE_TOOLS"
        npm install --prefix "$NODE_TOOLS" --no-audit --no-fund --silent \
            "binaryen@$BINARYEN_VERSION" "typescript@$TYPESCRIPT_VERSION" >&2
    fi
    WASM_OPT=$NODE_TOOLS/node_modules/.bin/wasm-opt
    TSC=$NODE_TOOLS/node_modules/.bin/tsc
else
    log "npm not found: no wasm-opt (the package is larger) and no tsc"
fi

if ((TOOLS_ONLY)); then
    echo "WASM_BINDGEN=$WASM_BINDGEN"
    echo "WASM_OPT=$WASM_OPT"
    echo "TSC=$TSC"
    exit 0
fi

# ---------------------------------------------------------------- build -----
# With a nightly toolchain (scripts/test.sh installs one for fuzzing) the
# standard library is rebuilt with panic=immediate-abort: no panic messages
# or their formatting in the module (about 13 KiB gzipped less). Without
# one, or if that fails, the stable build (SWITCHBOARD_WASM_STABLE=1 forces it).
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
built=
if [[ -z ${SWITCHBOARD_WASM_STABLE:-} ]] && command -v rustup >/dev/null 2>&1 &&
    rustup toolchain list | grep -q '^nightly'; then
    if ! rustup +nightly component list --installed | grep -q '^rust-src'; then
        log "adding rust-src to the nightly toolchain"
        rustup component add rust-src --toolchain nightly >&2
    fi
    if RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort" CARGO_TARGET_DIR=$TARGET_DIR/wasm-nightly \
        "${NICE[@]}" cargo +nightly build -Zbuild-std=std,panic_abort -p switchboard-wasm --lib \
        --target wasm32-unknown-unknown --profile wasm-release >&2; then
        built=$TARGET_DIR/wasm-nightly/wasm32-unknown-unknown/wasm-release/switchboard_wasm.wasm
        log "built with nightly, std rebuilt with panic=immediate-abort"
    else
        log "the nightly build failed: building with the stable toolchain"
    fi
fi
if [[ -z $built ]]; then
    "${NICE[@]}" cargo build -p switchboard-wasm --lib --target wasm32-unknown-unknown --profile wasm-release >&2
    built=$TARGET_DIR/wasm32-unknown-unknown/wasm-release/switchboard_wasm.wasm
fi
WASM=$built

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
"$WASM_BINDGEN" --target web --out-dir "$STAGE" --out-name switchboard "$WASM"
if ((OPT)) && [[ -n $WASM_OPT ]]; then
    "$WASM_OPT" -Oz --strip-debug --strip-producers \
        --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        -o "$STAGE/switchboard_bg.opt.wasm" "$STAGE/switchboard_bg.wasm"
    mv "$STAGE/switchboard_bg.opt.wasm" "$STAGE/switchboard_bg.wasm"
fi

VERSION=$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version/ { print $2; exit }' Cargo.toml)
sed "s/@VERSION@/$VERSION/" client-wasm/package.json.in >"$STAGE/package.json"
cp client-wasm/README.md "$STAGE/README.md"
rm -f "$STAGE/.gitignore"

# The hash of the sources (client-wasm/package-inputs), so that a test can
# tell a committed package that is older than its sources.
source_hash() {
    grep -v '^#' client-wasm/package-inputs | grep . | while read -r p; do
        if [[ -d $p ]]; then find "$p" -type f; else echo "$p"; fi
    done | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -d' ' -f1
}
echo "$(source_hash) wasm-bindgen $WB_VERSION" >"$STAGE/SOURCE_HASH"

mkdir -p "$OUT"
rm -rf "${OUT:?}"/*
cp -r "$STAGE"/. "$OUT"/

wasm_gz=$(gzip -9 -c "$OUT/switchboard_bg.wasm" | wc -c)
js_gz=$(gzip -9 -c "$OUT/switchboard.js" | wc -c)
wasm_raw=$(wc -c <"$OUT/switchboard_bg.wasm")
js_raw=$(wc -c <"$OUT/switchboard.js")
echo "built $OUT:"
echo "  switchboard_bg.wasm  $wasm_raw bytes, $wasm_gz gzipped"
echo "  switchboard.js       $js_raw bytes, $js_gz gzipped"
echo "  total gzipped        $((wasm_gz + js_gz)) bytes ($(((wasm_gz + js_gz + 1023) / 1024)) KiB)"
