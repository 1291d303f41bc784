#!/usr/bin/env bash
# Captures the golden record batches in proxy/tests/golden_batches/ from real clients.
#
# Starts the pinned tansu broker (scripts/install-broker.sh) advertising the address of a
# recording relay (proxy/examples/capture_relay.rs) in front of it, then runs one scenario
# per client x mode x codec with tests/python/capture_batches.py:
#   clients: confluent-kafka (librdkafka) and kafka-python
#   modes:   plain, idempotent, transactional (commit + abort: control batches)
#   codecs:  none, gzip, snappy, lz4, zstd
# The relay writes every Produce request's and Fetch response's `records` field to
# OUT/TOPIC.{produce,fetch}.NNN.bin, topic = CLIENT.MODE.CODEC. The client versions used
# are written to OUT/VERSIONS.txt.
#
# Not run by CI: the captured files are committed, and the codec's unit test
# (proxy/src/codec/record_batch/tests/golden.rs) checks every one of them.
#
# Needs a Python with confluent-kafka and kafka-python plus kafka-python's codec packages
# (python-snappy, lz4, zstandard); it is made at $CAPTURE_VENV (default
# ~/.cache/portcullis/capture-venv) when missing.
#
# Usage: scripts/capture-golden-batches.sh [OUT]   (default proxy/tests/golden_batches)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/proxy/tests/golden_batches}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
CAPTURE_VENV="${CAPTURE_VENV:-$CACHE_DIR/capture-venv}"
TANSU="${PORTCULLIS_TANSU:-$CACHE_DIR/tansu-0.6.0/bin/tansu}"
CLIENTS="${CLIENTS:-confluent kafka-python}"
MODES="${MODES:-plain idempotent transactional}"
CODECS="${CODECS:-none gzip snappy lz4 zstd}"

[[ -x "$TANSU" ]] || { echo "tansu not found at $TANSU: run scripts/install-broker.sh" >&2; exit 1; }
if [[ ! -x "$CAPTURE_VENV/bin/python" ]]; then
    python3 -m venv "$CAPTURE_VENV"
    "$CAPTURE_VENV/bin/pip" install -q kafka-python==3.0.12 confluent-kafka==2.16.1 \
        python-snappy==0.7.3 lz4==4.4.5 zstandard==0.25.0
fi
PY="$CAPTURE_VENV/bin/python"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d -t golden-capture.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    grep -h "does not decode" "$WORK/relay.log" >&2 || true
    if [[ -n "${KEEP_WORK:-}" ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

BROKER_PORT="$(free_port)"
RELAY_PORT="$(free_port)"
RELAY="127.0.0.1:$RELAY_PORT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build -q -p portcullis --example capture_relay
"$CARGO_TARGET_DIR/debug/examples/capture_relay" --listen "$RELAY" \
    --upstream "127.0.0.1:$BROKER_PORT" --out "$WORK/captured" >"$WORK/relay.log" 2>&1 &
PIDS+=($!)

(cd "$WORK" && env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
    RUST_LOG=warn "$TANSU" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://$RELAY" --storage-engine memory://tansu/ \
    >"$WORK/tansu.log" 2>&1) &
PIDS+=($!)

for _ in $(seq 100); do
    if "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $BROKER_PORT), 1)" 2>/dev/null \
        && grep -q listening "$WORK/relay.log"; then break; fi
    sleep 0.2
done

mkdir -p "$OUT"
: >"$WORK/versions"
failed=()
for client in $CLIENTS; do
    for mode in $MODES; do
        for codec in $CODECS; do
            topic="$client.$mode.$codec"
            echo "== $topic" >&2
            if timeout 120 "$PY" "$ROOT/tests/python/capture_batches.py" --client "$client" \
                --mode "$mode" --codec "$codec" --bootstrap "$RELAY" --topic "$topic" \
                >>"$WORK/versions" 2>"$WORK/$topic.err"; then
                :
            else
                echo "   failed: $(tail -n 3 "$WORK/$topic.err")" >&2
                failed+=("$topic")
            fi
        done
    done
done

rm -f "$OUT"/*.bin
cp "$WORK"/captured/*.bin "$OUT"/
{
    echo "captured $(date -u +%Y-%m-%dT%H:%MZ) with $("$TANSU" --version 2>/dev/null || echo tansu 0.6.0)"
    "$PY" -c 'import sys, json; seen = {}
for line in sys.stdin:
    d = json.loads(line); d.pop("topic"); d.pop("mode"); d.pop("codec")
    seen[json.dumps(d, sort_keys=True)] = 1
print("\n".join(seen))' <"$WORK/versions"
    for t in "${failed[@]}"; do echo "FAILED scenario: $t"; done
} >"$OUT/VERSIONS.txt"
echo "$(ls "$OUT"/*.bin | wc -l) files in $OUT; failed scenarios: ${failed[*]:-none}" >&2
