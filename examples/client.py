"""Produce and consume a few records through Portcullis with a stock client (confluent-kafka).

Usage: python examples/client.py [BOOTSTRAP] [CA_FILE]
Defaults: localhost:9192 over TLS, trusting certs/ca.pem.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "localhost:9192"
ca = sys.argv[2] if len(sys.argv) > 2 else "certs/ca.pem"
common = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SSL",
    "ssl.ca.location": ca,
}
topic = "quickstart-" + uuid.uuid4().hex[:8]

admin = AdminClient(common)
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
producer = Producer(common)
sent = [f"hello {i}".encode() for i in range(10)]
for value in sent:
    producer.produce(topic, key=b"key", value=value)
if producer.flush(15) != 0:
    sys.exit("records were not acknowledged")
print(f"produced {len(sent)} records to {topic}")

consumer = Consumer({**common, "group.id": "quickstart", "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
received = []
deadline = time.time() + 30
while len(received) < len(sent) and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is not None and not message.error():
        received.append(message.value())
consumer.close()
if received != sent:
    sys.exit(f"consumed {len(received)} records, expected {len(sent)} identical ones")
print(f"consumed {len(received)} records back, byte-identical: OK")
