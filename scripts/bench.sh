#!/usr/bin/env bash
# Benchmark: direct vs proxied (plaintext and TLS) produce/consume throughput with 1 KiB
# records, produce latency p50/p99, proxy CPU seconds per GB, and proxy RSS over a soak —
# all against the same broker in one run, printed as a Markdown table with ratios.
#
#   scripts/bench.sh                      # defaults: 200000 records/path, 4 rounds, 300 s soak
#   scripts/bench.sh --records 50000 --soak-secs 0
#   scripts/bench.sh --pin-proxy          # below 8 cores: proxies on the last core, broker and
#                                         # client on the others (8+ cores always pin)
#   scripts/bench.sh --baseline-bin OLD/portcullis  # also runs OLD as "baseline" proxies in the
#                                                   # same rounds (before/after a change)
#   scripts/bench.sh --auth [--connections N]   # connection set-up cost per mechanism
#   scripts/bench.sh --authz [--records N ...]  # authorization on vs off (10/1,000/10,000/100,000
#                                               # policy lines), then the decision cost
#
# The default run also measures a bare TLS terminator (tls_terminator) as the reference for
# the TLS path, and each party's CPU per GB (proxy, broker, and the client in the bench).
#
# Builds the release proxy and the bench client first; installs the broker if missing.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"

bash scripts/install-test-deps.sh
cargo build --release -p portcullis
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), $(date -u +%Y-%m-%d)" >&2
if [[ "${1:-}" == "--auth" ]]; then
    shift
    cargo build --release -p portcullis-tests --bin auth_bench
    PORTCULLIS_BIN="$(realpath "$target")/release/portcullis" exec "$target/release/auth_bench" "$@"
fi
if [[ "${1:-}" == "--authz" ]]; then
    shift
    cargo build --release -p portcullis-tests --bin authz_bench
    PORTCULLIS_BIN="$(realpath "$target")/release/portcullis" "$target/release/authz_bench" "$@"
    echo
    exec cargo run --release -q -p portcullis-policy --example decision_bench
fi
cargo build --release -p portcullis-tests --bin bench --bin tls_terminator
PORTCULLIS_BIN="$(realpath "$target")/release/portcullis" exec "$target/release/bench" "$@"
