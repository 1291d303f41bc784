#!/usr/bin/env python3
"""Probes what a principal may do through the proxy, with confluent-kafka or kafka-python.

Each --probe is one action; the script prints one JSON object mapping every probe to
"ok", the Kafka error name the client reported (e.g. TOPIC_AUTHORIZATION_FAILED), or, for
"list", the sorted topic names the client was shown. The Rust test decides what is right.

    produce:TOPIC          write one record to partition 0
    consume:TOPIC:GROUP    read one record in GROUP (subscribe, earliest)
    list                   topic names from a metadata request for all topics
    create:TOPIC           CreateTopics with 1 partition
    delete:TOPIC           DeleteTopics
"""

import argparse
import json
import sys
import time

from clients import confluent_security, kafka_python_security


def error_name(e):
    """The Kafka error name of a client exception or error object."""
    for attr in ("name",):
        fn = getattr(e, attr, None)
        if callable(fn):
            return fn()
    if e.args and hasattr(e.args[0], "name") and callable(e.args[0].name):
        return e.args[0].name()
    message = getattr(e, "message", None)
    if isinstance(message, str) and message.isupper():
        return message
    return type(e).__name__


def confluent_probe(args, probe):
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}
    base.update(confluent_security(args))
    kind, _, rest = probe.partition(":")
    if kind == "produce":
        result = {}

        def done(err, _msg):
            result["r"] = "ok" if err is None else err.name()

        p = Producer({**base, "message.timeout.ms": 20000, "retries": 0})
        p.produce(rest, b"probe", partition=0, on_delivery=done)
        p.flush(args.timeout)
        return result.get("r", "TIMEOUT")
    if kind == "consume":
        topic, _, group = rest.partition(":")
        c = Consumer({**base, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([topic])
        deadline = time.time() + args.timeout
        try:
            while time.time() < deadline:
                m = c.poll(1.0)
                if m is None:
                    continue
                if m.error():
                    return m.error().name()
                return "ok"
            return "TIMEOUT"
        finally:
            c.close()
    if kind == "list":
        p = Producer(base)
        return sorted(p.list_topics(timeout=args.timeout).topics.keys())
    if kind in ("create", "delete"):
        a = AdminClient(base)
        if kind == "create":
            futures = a.create_topics([NewTopic(rest, 1, 1)], operation_timeout=15)
        else:
            futures = a.delete_topics([rest], operation_timeout=15)
        try:
            futures[rest].result(timeout=args.timeout)
            return "ok"
        except KafkaException as e:
            return e.args[0].name()
    raise SystemExit(f"unknown probe {probe}")


def kafka_python_probe(args, probe):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    common = {"bootstrap_servers": [args.bootstrap], "request_timeout_ms": 20000}
    common.update(kafka_python_security(args))
    kind, _, rest = probe.partition(":")
    try:
        if kind == "produce":
            p = KafkaProducer(**common, acks=1, retries=0)
            try:
                p.send(rest, b"probe", partition=0).get(timeout=args.timeout)
            finally:
                p.close(timeout=5)
            return "ok"
        if kind == "consume":
            topic, _, group = rest.partition(":")
            c = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest",
                              enable_auto_commit=False,
                              consumer_timeout_ms=int(args.timeout * 1000), **common)
            try:
                for _ in c:
                    return "ok"
                return "TIMEOUT"
            finally:
                c.close()
        if kind == "list":
            c = KafkaConsumer(**common)
            try:
                return sorted(c.topics())
            finally:
                c.close()
        if kind in ("create", "delete"):
            a = KafkaAdminClient(**common)
            try:
                if kind == "create":
                    r = a.create_topics([NewTopic(rest, 1, 1)], timeout_ms=15000)
                    errors = [e[1] for e in getattr(r, "topic_errors", getattr(r, "topics", []))]
                else:
                    r = a.delete_topics([rest], timeout_ms=15000)
                    errors = [e[1] for e in getattr(r, "topic_error_codes", getattr(r, "responses", []))]
            finally:
                a.close()
            from kafka.errors import for_code
            bad = [c for c in errors if isinstance(c, int) and c != 0]
            return "ok" if not bad else for_code(bad[0]).message
    except Exception as e:  # the client's own error type carries the Kafka name
        return error_name(e)
    raise SystemExit(f"unknown probe {probe}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, choices=["confluent", "kafka-python"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--probe", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--ca")
    ap.add_argument("--client-cert")
    ap.add_argument("--client-key")
    ap.add_argument("--sasl-mechanism")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--oauth-token")
    args = ap.parse_args()
    run = confluent_probe if args.client == "confluent" else kafka_python_probe
    out = {}
    for probe in args.probe:
        out[probe] = run(args, probe)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
