#!/usr/bin/env bash
# A Python virtual environment for the tests that drive Python tools
# (schemathesis, the prometheus_client parser, the FastAPI example):
#
#   scripts/py-venv.sh REQUIREMENTS_FILE
#
# Creates (once) a venv under the cache (SWITCHBOARD_CACHE, default
# ~/.cache/switchboard), named by the hash of the requirements file, installs
# the file into it with pip, and prints the venv's python on stdout. Several
# tests may call it at once: a lock makes the others wait for the first.
# Fails with a message naming what is missing (python3, its venv module, or
# the package index).
set -euo pipefail

REQ=${1:?usage: scripts/py-venv.sh REQUIREMENTS_FILE}
[[ -f $REQ ]] || { echo "py-venv: no such requirements file: $REQ" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 ||
    { echo "py-venv: python3 not found: install it (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }

CACHE=${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}
HASH=$( (python3 --version; cat "$REQ") | sha256sum | cut -c1-16)
VENV=$CACHE/py-$HASH
mkdir -p "$CACHE"

exec 9>"$VENV.lock"
flock 9
if [[ ! -f $VENV/.complete ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2 ||
        { echo "py-venv: python3 -m venv failed: install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2 ||
        { echo "py-venv: pip install -r $REQ failed (is the package index reachable?)" >&2; rm -rf "$VENV"; exit 1; }
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
