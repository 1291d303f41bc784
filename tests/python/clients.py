#!/usr/bin/env python3
"""Produce and consume with a real Python Kafka client; print one JSON report.

Driven by the Rust harness (tests/src/python.rs), which creates the topic, runs this script
against a broker or a Portcullis proxy, and asserts on the report:

    {"client": "...", "library_version": "...", "api_version": "...",
     "sent": [{"partition", "offset", "key", "value", "headers"}],      # hex bytes or null
     "received": [{"partition", "offset", "key", "value", "headers"}],  # in arrival order
      "brokers": [{"id", "host", "port"}], "coordinator": "host:port" | null,
     "seen_brokers": ["host:port"],                 # confluent-kafka: from statistics
     "cluster_nodes": [{"id", "host", "port"}]}    # confluent-kafka: DescribeCluster

Records are deterministic (null and empty keys and values, duplicate and empty headers,
binary bytes) and spread round-robin over the partitions. The consumer joins a consumer
group (FindCoordinator, JoinGroup, SyncGroup, OffsetFetch, Fetch, OffsetCommit) and reads
from the beginning.

Clients: confluent-kafka (librdkafka) and kafka-python (pure Python). kafka-python
negotiates its protocol version with ApiVersions unless --api-version pins it.
"""

import argparse
import json
import sys
import time


def sample_records(count, partitions, marker=b""):
    """Deterministic awkward records: (partition, key, value, headers). A non-empty `marker`
    is appended to every non-null value and header value, and added as one more header (the
    encryption tests search the broker's copy for it)."""
    out = []
    for i in range(count):
        if i % 7 == 3:
            key = None
        elif i % 7 == 5:
            key = b""
        else:
            key = f"key-{i}".encode() + bytes([i % 256, 0, 255])
        if i % 11 == 4:
            value = None
        elif i % 11 == 6:
            value = b""
        else:
            value = bytes((i * 31 + j * 7) % 256 for j in range((i * 137) % 700))
        if key is None and value is None:
            value = b""  # kafka-python refuses a record with neither
        if i % 4 == 0:
            headers = []
        elif i % 4 == 1:
            headers = [("trace", bytes([i % 256, 1, 2, 3]))]
        elif i % 4 == 2:
            headers = [("dup", b"first"), ("dup", b"second"), ("empty", b"")]
        else:
            headers = [("utf8-ключ", "значение".encode())]
        if marker:
            value = None if value is None else value + marker
            headers = [(k, v + marker) for (k, v) in headers] + [("secret", marker)]
        out.append((i % partitions, key, value, headers))
    return out


def hx(b):
    return None if b is None else bytes(b).hex()


def broker_json(b):
    """A broker from kafka-python's cluster metadata (field names changed in 3.x)."""
    node_id = getattr(b, "node_id", None)
    if node_id is None:
        node_id = getattr(b, "nodeId")
    return {"id": node_id, "host": b.host, "port": b.port}


def rec_json(partition, offset, key, value, headers):
    return {
        "partition": partition,
        "offset": offset,
        "key": hx(key),
        "value": hx(value),
        "headers": [[k, hx(v)] for (k, v) in (headers or [])],
    }


def confluent_security(args):
    """security.protocol, TLS trust, client certificate and SASL settings for librdkafka."""
    conf = {}
    if args.ca:
        conf["ssl.ca.location"] = args.ca
    if args.client_cert:
        conf["ssl.certificate.location"] = args.client_cert
        conf["ssl.key.location"] = args.client_key
    if args.sasl_mechanism:
        conf["security.protocol"] = "sasl_ssl" if args.ca else "sasl_plaintext"
        conf["sasl.mechanism"] = args.sasl_mechanism
        if args.sasl_mechanism == "OAUTHBEARER":
            token = args.oauth_token

            def oauth_cb(_config):
                claims = jwt_claims(token)
                return token, float(claims["exp"])

            conf["oauth_cb"] = oauth_cb
        else:
            conf["sasl.username"] = args.username
            conf["sasl.password"] = args.password
    elif args.ca:
        conf["security.protocol"] = "ssl"
    return conf


def kafka_python_security(args):
    """The same settings in kafka-python's spelling."""
    conf = {}
    if args.ca:
        conf["ssl_cafile"] = args.ca
    if args.client_cert:
        conf["ssl_certfile"] = args.client_cert
        conf["ssl_keyfile"] = args.client_key
    if args.sasl_mechanism:
        conf["security_protocol"] = "SASL_SSL" if args.ca else "SASL_PLAINTEXT"
        conf["sasl_mechanism"] = args.sasl_mechanism
        if args.sasl_mechanism == "OAUTHBEARER":
            from kafka.net.sasl.oauth import AbstractTokenProvider

            class StaticToken(AbstractTokenProvider):
                def token(self):
                    return args.oauth_token

            conf["sasl_oauth_token_provider"] = StaticToken()
        else:
            conf["sasl_plain_username"] = args.username
            conf["sasl_plain_password"] = args.password
    elif args.ca:
        conf["security_protocol"] = "SSL"
    return conf


def jwt_claims(token):
    """The (unverified) claims of a JWT, to tell librdkafka when it expires."""
    import base64

    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def run_confluent(args, records):
    import confluent_kafka
    from confluent_kafka import Consumer, Producer

    seen = set()

    def on_stats(raw):
        # librdkafka statistics name every broker the client knows, including the group
        # coordinator, whichever response it came from.
        for b in json.loads(raw).get("brokers", {}).values():
            if b.get("nodename") and b.get("source") != "internal":
                seen.add(b["nodename"])

    conf = {
        "bootstrap.servers": args.bootstrap,
        "broker.address.family": "v4",
        "statistics.interval.ms": 100,
        "stats_cb": on_stats,
    }
    conf.update(confluent_security(args))

    producer = Producer({**conf, "linger.ms": 5, "message.timeout.ms": 30000})
    delivered = {}

    def on_delivery(err, msg, i):
        if err is not None:
            raise SystemExit(f"record {i} not delivered: {err}")
        delivered[i] = (msg.partition(), msg.offset())

    for i, (partition, key, value, headers) in enumerate(records):
        producer.produce(
            args.topic,
            key=key,
            value=value,
            headers=headers,
            partition=partition,
            on_delivery=lambda err, msg, i=i: on_delivery(err, msg, i),
        )
    remaining = producer.flush(args.timeout)
    if remaining or len(delivered) != len(records):
        raise SystemExit(f"{remaining} records undelivered, {len(delivered)} reports")
    md = producer.list_topics(timeout=10)
    brokers = [{"id": b.id, "host": b.host, "port": b.port} for b in md.brokers.values()]

    # DescribeCluster (a different response carrying broker addresses than Metadata).
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(conf)  # must outlive the future
    cluster = admin.describe_cluster(request_timeout=10).result(timeout=30)
    cluster_nodes = [{"id": n.id, "host": n.host, "port": n.port} for n in cluster.nodes]
    if cluster.controller is not None:
        c = cluster.controller
        cluster_nodes.append({"id": c.id, "host": c.host, "port": c.port})

    sent = []
    for i, (partition, key, value, headers) in enumerate(records):
        p, o = delivered[i]
        sent.append(rec_json(p, o, key, value, headers))

    consumer = Consumer(
        {
            **conf,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
        }
    )
    consumer.subscribe([args.topic])
    received = []
    deadline = time.monotonic() + args.timeout
    while len(received) < len(records) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"consumer error: {msg.error()}")
        received.append(rec_json(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()))
    consumer.commit(asynchronous=False)
    # Let at least one statistics report cover the group coordinator.
    stats_deadline = time.monotonic() + 2
    while time.monotonic() < stats_deadline:
        consumer.poll(0.1)
    consumer.close()
    return {
        "client": "confluent-kafka",
        "library_version": confluent_kafka.__version__,
        "librdkafka_version": confluent_kafka.libversion()[0],
        "sent": sent,
        "received": received,
        "brokers": brokers,
        "coordinator": None,
        "seen_brokers": sorted(seen),
        "cluster_nodes": cluster_nodes,
    }


def run_kafka_python(args, records):
    import kafka
    from kafka import KafkaConsumer, KafkaProducer

    common = {"bootstrap_servers": [args.bootstrap], "request_timeout_ms": 30000}
    if args.api_version:
        common["api_version"] = tuple(int(x) for x in args.api_version.split("."))
    common.update(kafka_python_security(args))

    producer = KafkaProducer(**common, linger_ms=5, acks=1)
    futures = []
    for partition, key, value, headers in records:
        futures.append(producer.send(args.topic, key=key, value=value, headers=headers, partition=partition))
    producer.flush(timeout=args.timeout)
    sent = []
    for f, (partition, key, value, headers) in zip(futures, records):
        md = f.get(timeout=args.timeout)
        sent.append(rec_json(md.partition, md.offset, key, value, headers))
    api_version = producer.config.get("api_version")
    brokers = [broker_json(b) for b in producer._metadata.brokers()]
    producer.close(timeout=10)

    consumer = KafkaConsumer(
        args.topic,
        **common,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    received = []
    deadline = time.monotonic() + args.timeout
    while len(received) < len(records) and time.monotonic() < deadline:
        for msg in consumer:
            received.append(rec_json(msg.partition, msg.offset, msg.key, msg.value, msg.headers))
            if len(received) >= len(records):
                break
    coordinator = None
    try:
        coord_id = consumer._coordinator.coordinator_id
        if coord_id is not None:
            b = consumer._client.cluster.broker_metadata(coord_id)
            if b is not None:
                coordinator = f"{b.host}:{b.port}"
    except Exception:  # private API; absent in some versions
        coordinator = None
    brokers += [broker_json(b) for b in consumer._client.cluster.brokers()]
    consumer.commit()
    consumer.close()
    return {
        "client": "kafka-python",
        "library_version": kafka.__version__,
        "api_version": ".".join(str(x) for x in api_version) if api_version else None,
        "sent": sent,
        "received": received,
        "brokers": brokers,
        "coordinator": coordinator,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", required=True, choices=["confluent", "kafka-python"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--group", required=True)
    ap.add_argument("--ca", help="CA bundle: use TLS")
    ap.add_argument("--api-version", help="kafka-python: pin the protocol version, e.g. 2.5.0")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--marker", default="", help="hex bytes appended to every value and header value")
    ap.add_argument("--client-cert", help="client certificate (PEM) for mTLS")
    ap.add_argument("--client-key", help="key of --client-cert")
    ap.add_argument("--sasl-mechanism", help="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--oauth-token", help="OAUTHBEARER: the JWT to present")
    args = ap.parse_args()

    records = sample_records(args.count, args.partitions, bytes.fromhex(args.marker))
    if args.client == "confluent":
        report = run_confluent(args, records)
    else:
        report = run_kafka_python(args, records)
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
