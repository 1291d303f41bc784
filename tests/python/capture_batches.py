#!/usr/bin/env python3
"""Produce (and read back) one golden-batch scenario with a real Python Kafka client.

Run by scripts/capture-golden-batches.sh against a broker reached through the recording
relay (proxy/examples/capture_relay.rs), which writes the Produce requests' and Fetch
responses' `records` fields to files named after the topic. One run = one scenario:

    capture_batches.py --client confluent|kafka-python --mode plain|idempotent|transactional
                       --codec none|gzip|snappy|lz4|zstd --bootstrap HOST:PORT --topic NAME

It creates the topic, produces two rounds of awkward records (null and empty keys and
values, duplicate header keys in order, binary bytes) with a flush between rounds so the
log holds several adjacent batches with equal properties. A transactional run produces
both rounds in one transaction and commits it, then aborts an extra one, so that a broker with
EndTxn support writes COMMIT and ABORT control batches. tansu 0.6.0 has no EndTxn: there
the commit fails, the records stay in the open transaction, and the run carries on
(the transactional Produce batches are still captured; "commit": "unsupported" in the
output says so). Then it reads the topic from the beginning, read_uncommitted (the Fetch
responses are what the relay records), and prints one JSON line with the client and library
versions.

kafka-python needs python-snappy, lz4 and zstandard for its codecs; the capture script
installs them in its own virtualenv.
"""

import argparse
import json
import sys
import time

ROUNDS = 2
PER_ROUND = 5


def records(round_no):
    out = []
    for i in range(PER_ROUND):
        n = round_no * PER_ROUND + i
        key = None if i == 1 else (b"" if i == 2 else f"key-{n}".encode() + bytes([0, 255, n]))
        value = None if i == 3 else (b"" if i == 4 else (f"value-{n}-".encode() * (1 + n % 4)))
        headers = [("trace", f"t{n}".encode()), ("dup", b"first"), ("dup", b"second")]
        if i % 2 == 0:
            headers.append(("empty", b""))
            headers.append(("dup", b"third"))
        out.append((key, value, headers))
    return out


def run_confluent(args):
    import confluent_kafka
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}
    admin = AdminClient(base)
    for f in admin.create_topics([NewTopic(args.topic, 1, 1)]).values():
        f.result(30)
    time.sleep(0.5)
    conf = dict(base, **{"compression.type": args.codec, "linger.ms": 200})
    if args.mode == "plain":
        conf["enable.idempotence"] = False
        conf["acks"] = "1"
    elif args.mode == "idempotent":
        conf["enable.idempotence"] = True
    else:
        conf["transactional.id"] = f"tx-{args.topic}"
    p = Producer(conf)
    commit = None
    if args.mode == "transactional":
        p.init_transactions(30)
        p.begin_transaction()
    for r in range(ROUNDS):
        for key, value, headers in records(r):
            p.produce(args.topic, key=key, value=value, headers=headers, partition=0)
        assert p.flush(30) == 0
    if args.mode == "transactional":
        try:
            p.commit_transaction(30)
        except confluent_kafka.KafkaException as e:
            if e.args[0].code() != confluent_kafka.KafkaError._UNSUPPORTED_FEATURE:
                raise
            commit = "unsupported"
    if args.mode == "transactional" and commit is None:
        p.begin_transaction()
        p.produce(args.topic, key=b"aborted", value=b"never visible", partition=0)
        p.flush(30)
        p.abort_transaction(30)
        commit = "committed"
    expected = ROUNDS * PER_ROUND
    c = Consumer(dict(base, **{"group.id": f"g-{args.topic}", "auto.offset.reset": "earliest",
                               "enable.auto.commit": False, "isolation.level": "read_uncommitted"}))
    c.subscribe([args.topic])
    got, deadline = 0, time.time() + 30
    while got < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    c.close()
    if got < expected:
        sys.exit(f"read {got} of {expected} records")
    return {"client": "confluent-kafka", "version": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0], "commit": commit}


def run_kafka_python(args):
    import kafka
    import kafka.errors
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(args.topic, 1, 1)])
    admin.close()
    time.sleep(0.5)
    conf = {"bootstrap_servers": args.bootstrap, "linger_ms": 200,
            "compression_type": None if args.codec == "none" else args.codec}
    if args.mode == "plain":
        conf.update(enable_idempotence=False, acks=1)
    elif args.mode == "idempotent":
        conf.update(enable_idempotence=True, acks="all")
    else:
        conf.update(transactional_id=f"tx-{args.topic}", enable_idempotence=True, acks="all")
    p = KafkaProducer(**conf)
    commit = None
    if args.mode == "transactional":
        p.init_transactions()
        p.begin_transaction()
    for r in range(ROUNDS):
        futures = [p.send(args.topic, key=k, value=v, headers=h, partition=0)
                   for k, v, h in records(r)]
        p.flush(30)
        for f in futures:
            f.get(30)
    if args.mode == "transactional":
        try:
            p.commit_transaction()
        except kafka.errors.IncompatibleBrokerVersion:
            commit = "unsupported"
    if args.mode == "transactional" and commit is None:
        p.begin_transaction()
        p.send(args.topic, key=b"aborted", value=b"never visible", partition=0)
        p.flush(30)
        p.abort_transaction()
        commit = "committed"
    p.close(1)
    expected = ROUNDS * PER_ROUND
    c = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=f"g-{args.topic}",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      isolation_level="read_uncommitted", consumer_timeout_ms=30000)
    got = 0
    for _ in c:
        got += 1
        if got >= expected:
            break
    c.close()
    if got < expected:
        sys.exit(f"read {got} of {expected} records")
    return {"client": "kafka-python", "version": kafka.__version__, "commit": commit}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, choices=["confluent", "kafka-python"])
    ap.add_argument("--mode", required=True, choices=["plain", "idempotent", "transactional"])
    ap.add_argument("--codec", required=True, choices=["none", "gzip", "snappy", "lz4", "zstd"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args()
    run = run_confluent if args.client == "confluent" else run_kafka_python
    print(json.dumps(dict(run(args), mode=args.mode, codec=args.codec, topic=args.topic)))


if __name__ == "__main__":
    main()
