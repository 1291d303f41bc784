#!/usr/bin/env bash
# Installs everything the end-to-end tests need, idempotently and without prompts:
#   - Debian packages for building librdkafka (rdkafka crate, bundled sources) and the venv,
#     and SoftHSM2 (softhsm2-util and libsofthsm2.so: the PKCS#11 root-key tests);
#   - a Python virtualenv with pinned confluent-kafka, kafka-python and moto[server] (the
#     AWS KMS root-key tests), in the user cache
#     (${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/venv, or $PORTCULLIS_VENV);
#   - the pinned tansu broker (scripts/install-broker.sh).
# Safe to re-run: each step is skipped when its result is already present.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis"
VENV="${PORTCULLIS_VENV:-$CACHE_DIR/venv}"

# Pinned client versions (bump deliberately; the tests assert their behaviour).
CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA_PYTHON_VERSION=3.0.12
MOTO_VERSION=5.2.6

export DEBIAN_FRONTEND=noninteractive

# --- Debian packages -------------------------------------------------------------------
# build-essential, make, perl: librdkafka's mklove build; pkg-config + libssl-dev: TLS
# (openssl-sys); zlib1g-dev: gzip; python3-venv: the virtualenv when python3 is Debian's;
# softhsm2: a PKCS#11 token (softhsm2-util, /usr/lib/softhsm/libsofthsm2.so).
APT_PACKAGES=(build-essential make perl pkg-config libssl-dev zlib1g-dev ca-certificates python3 python3-venv softhsm2)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}" >&2
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then
        SUDO="sudo -n"
    fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "Debian packages present" >&2
fi

# --- Python virtualenv ---------------------------------------------------------------------
PYTHON="${PORTCULLIS_PYTHON:-$(command -v python3)}"
want_freeze="confluent-kafka==$CONFLUENT_KAFKA_VERSION kafka-python==$KAFKA_PYTHON_VERSION moto[server]==$MOTO_VERSION"
have_versions() {
    [[ -x "$VENV/bin/python" ]] || return 1
    [[ -x "$VENV/bin/moto_server" ]] || return 1
    "$VENV/bin/python" - "$CONFLUENT_KAFKA_VERSION" "$KAFKA_PYTHON_VERSION" "$MOTO_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import flask  # moto's [server] extra: moto_server needs it
ok = (version("confluent-kafka") == sys.argv[1] and version("kafka-python") == sys.argv[2]
      and version("moto") == sys.argv[3])
sys.exit(0 if ok else 1)
PY
}
if have_versions; then
    echo "Python venv ready: $VENV" >&2
else
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating Python venv $VENV with $PYTHON" >&2
        mkdir -p "$(dirname "$VENV")"
        "$PYTHON" -m venv "$VENV"
    fi
    echo "installing $want_freeze into $VENV" >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "kafka-python==$KAFKA_PYTHON_VERSION" \
        "moto[server]==$MOTO_VERSION"
    have_versions || { echo "venv $VENV does not hold $want_freeze after install" >&2; exit 1; }
fi

# --- Broker ----------------------------------------------------------------------------------
"$HERE/install-broker.sh" >/dev/null
echo "test dependencies ready" >&2
