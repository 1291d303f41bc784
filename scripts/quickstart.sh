#!/usr/bin/env bash
# The README's first command: build Portcullis, install the development broker, generate
# development certificates, and run broker + proxy (TLS for clients) in the foreground,
# printing how to connect a client. Clients authenticate with SCRAM (development users are
# created in .quickstart/users.toml, passwords in .quickstart/passwords.txt) and are
# authorized by the example policies in policies/. Ctrl-C stops both.
#
# Ports (override with environment variables): broker 127.0.0.1:9092, proxy bootstrap
# localhost:9192 (TLS), per-broker ports 9193-9199, admin HTTP 127.0.0.1:9190 — as set in
# examples/quickstart.toml.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
STATE="$ROOT/.quickstart"
mkdir -p "$STATE"

say() { echo "==> $*" >&2; }

say "building portcullis (release)"
cargo build --release -p portcullis
PORTCULLIS="$ROOT/target/release/portcullis"

say "installing the development broker (tansu 0.6.0) and the Python client venv"
bash scripts/install-test-deps.sh
TANSU=$(bash scripts/install-broker.sh | tail -n 1)
VENV="${PORTCULLIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/venv}"

if [[ ! -f certs/ca.pem ]]; then
    say "generating development certificates in certs/"
    "$PORTCULLIS" certs init --out certs
else
    say "using existing development certificates in certs/ (delete them to regenerate)"
fi

USERS="$STATE/users.toml"
PASSWORDS="$STATE/passwords.txt"
if [[ ! -f "$USERS" ]]; then
    say "creating development users (roles from policies/estate.csv) in $USERS"
    umask 077
    : >"$PASSWORDS"
    for entry in admin:admin alice:producers bob:consumers carol:analytics; do
        name=${entry%%:*}
        roles=${entry#*:}
        password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
        printf '%s\n' "$password" | "$PORTCULLIS" users --store "$USERS" add "$name" --password-stdin --roles "$roles" >/dev/null
        echo "$name $password" >>"$PASSWORDS"
    done
    umask 022
fi
password_of() { awk -v u="$1" '$1 == u { print $2 }' "$PASSWORDS"; }

# The root key of record encryption ([encryption] in the example): made once, never replaced.
if [ ! -f "$STATE/keys/root.key" ]; then
    "$PORTCULLIS" keys init --config examples/quickstart.toml
fi

"$PORTCULLIS" check --config examples/quickstart.toml

for port in 9092 9192 9190; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use; stop whatever listens there (an earlier quickstart?)" >&2
        exit 1
    fi
done

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say "starting the broker on 127.0.0.1:9092 (log: .quickstart/broker.log)"
"$TANSU" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$STATE/broker.log" 2>&1 &
pids+=($!)

say "starting portcullis (log: .quickstart/proxy.log)"
"$PORTCULLIS" serve --config examples/quickstart.toml >"$STATE/proxy.log" 2>&1 &
pids+=($!)

ready() {
    "$VENV/bin/python" -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9190/readyz", timeout=1)' 2>/dev/null
}
for _ in $(seq 1 100); do
    if ready; then break; fi
    sleep 0.2
done
if ! ready; then
    echo "the proxy did not become ready; last log lines:" >&2
    tail -n 20 "$STATE/proxy.log" >&2
    exit 1
fi

cat <<MSG

Portcullis is running.
  bootstrap.servers   localhost:9192   (TLS; the broker itself is at 127.0.0.1:9092)
  security.protocol   SASL_SSL
  sasl.mechanism      SCRAM-SHA-512
  ssl.ca.location     $ROOT/certs/ca.pem
  users (passwords)   $PASSWORDS   admin=admin, alice=producers, bob=consumers, carol=analytics
  policies            $ROOT/policies   (edit while running; check: $PORTCULLIS policy check policies)
  metrics / health    http://127.0.0.1:9190/metrics  /healthz  /readyz
  audit log           $STATE/audit  (live: http://127.0.0.1:9190/audit/tail ; stopped: portcullis audit --data-dir $STATE/audit verify)

Produce and consume through the proxy with a stock client (confluent-kafka), in another
terminal (alice writes orders, bob reads them, and bob is refused when he tries to write):
  $VENV/bin/python $ROOT/examples/client.py localhost:9192 $ROOT/certs/ca.pem $PASSWORDS

Any other client works the same way, e.g. librdkafka properties:
  bootstrap.servers=localhost:9192
  security.protocol=SASL_SSL
  sasl.mechanism=SCRAM-SHA-512
  sasl.username=alice
  sasl.password=$(password_of alice)
  ssl.ca.location=$ROOT/certs/ca.pem

Press Ctrl-C to stop broker and proxy.
MSG

wait -n "${pids[@]}"
echo "a process exited; stopping (see .quickstart/*.log)" >&2
