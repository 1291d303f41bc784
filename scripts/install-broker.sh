#!/usr/bin/env bash
# Installs the pinned Kafka-compatible broker the end-to-end tests run against: tansu 0.6.0,
# built from crates.io into a per-user cache so it survives `cargo clean` and is shared by
# every clone on the machine. Idempotent: does nothing when the binary is already there.
#
# Prints the binary's path on its last line. The tests find it at the same place (or at
# $PORTCULLIS_TANSU, which this script also honours).
set -euo pipefail

TANSU_VERSION=0.6.0
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
ROOT="$CACHE_DIR/tansu-$TANSU_VERSION"
BIN="${PORTCULLIS_TANSU:-$ROOT/bin/tansu}"

if [[ -x "$BIN" ]]; then
    echo "tansu $TANSU_VERSION already installed: $BIN" >&2
    echo "$BIN"
    exit 0
fi

if [[ -n "${PORTCULLIS_TANSU:-}" ]]; then
    echo "PORTCULLIS_TANSU=$PORTCULLIS_TANSU is set but not an executable file" >&2
    exit 1
fi

command -v cargo >/dev/null || { echo "cargo is required to build tansu" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
echo "building tansu $TANSU_VERSION into $ROOT (takes several minutes on 2 cores)..." >&2
start=$(date +%s)
cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$ROOT"
echo "tansu built in $(( $(date +%s) - start ))s" >&2

if [[ ! -x "$BIN" ]]; then
    echo "cargo install finished but $BIN is missing" >&2
    exit 1
fi
echo "$BIN"
