"""Produce and consume through Portcullis with a stock client (confluent-kafka), as the
quickstart's development users, and watch the example policies (policies/estate.csv) at work.

Usage: python examples/client.py [BOOTSTRAP] [CA_FILE] [PASSWORDS_FILE]
Defaults: localhost:9192 over TLS, trusting certs/ca.pem, passwords from
.quickstart/passwords.txt (lines "user password", written by scripts/quickstart.sh).

  admin  creates the topic `orders` (Role:admin has All on topics)
  alice  produces to `orders`        (Role:producers: Write on orders)
  bob    consumes in group orders-quickstart (Role:consumers: Read on orders and orders-* groups)
  bob    tries to produce to `orders` and is refused with TOPIC_AUTHORIZATION_FAILED
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "localhost:9192"
ca = sys.argv[2] if len(sys.argv) > 2 else "certs/ca.pem"
passwords_file = sys.argv[3] if len(sys.argv) > 3 else ".quickstart/passwords.txt"
with open(passwords_file) as f:
    passwords = dict(line.split() for line in f if line.strip())


def settings(user):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": passwords[user],
        "ssl.ca.location": ca,
    }


topic = "orders"
admin = AdminClient(settings("admin"))
try:
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
    print(f"admin created {topic}")
except KafkaException as e:
    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
        raise
    print(f"{topic} exists")

run = str(int(time.time()))
sent = [f"order {run}-{i}".encode() for i in range(10)]
producer = Producer(settings("alice"))
for value in sent:
    producer.produce(topic, key=b"key", value=value)
if producer.flush(15) != 0:
    sys.exit("records were not acknowledged")
print(f"alice produced {len(sent)} records to {topic}")

consumer = Consumer({**settings("bob"), "group.id": "orders-quickstart", "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
received = []
deadline = time.time() + 30
while len(received) < len(sent) and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        sys.exit(f"bob could not consume: {message.error()}")
    if message.value().startswith(f"order {run}-".encode()):
        received.append(message.value())
consumer.close()
if received != sent:
    sys.exit(f"bob consumed {len(received)} records, expected {len(sent)} identical ones")
print(f"bob consumed {len(received)} records back, byte-identical: OK")

refused = {}
bob_producer = Producer({**settings("bob"), "message.timeout.ms": 10000})
bob_producer.produce(topic, value=b"not allowed", on_delivery=lambda err, _m: refused.update(err=err))
bob_producer.flush(15)
err = refused.get("err")
if err is None or err.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
    sys.exit(f"bob's write to {topic} was not refused as it should be: {err}")
print(f"bob's write to {topic} refused by policy: {err.name()} (see the audit log)")
