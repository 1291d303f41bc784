#!/usr/bin/env bash
# The test command from the README (and what .ci/run executes).
#
#   1. formatting check (fast, needs nothing installed);
#   2. installs the test dependencies (Debian build packages, the Python venv with
#      confluent-kafka and kafka-python, the pinned tansu broker) -- idempotent;
#   3. clippy over the whole workspace with warnings as errors;
#   4. builds the proxy binary the end-to-end tests start;
#   5. runs every test in the workspace, including the end-to-end suite against a real
#      broker with rdkafka, confluent-kafka and kafka-python.
#
# Works unattended (CI=true, no stdin). Exits non-zero on the first failure.
# PORTCULLIS_TEST_THREADS sets test parallelism (default 2: every end-to-end test runs its
# own broker and proxy, and the reference machine has 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    echo
    echo "==> $* ($(date -u +%H:%M:%S))"
}

started=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build -p portcullis"
cargo build -p portcullis

step "cargo test --workspace"
cargo test --workspace --no-fail-fast -- --test-threads="${PORTCULLIS_TEST_THREADS:-2}"

echo
echo "all checks passed in $(( $(date +%s) - started ))s"
