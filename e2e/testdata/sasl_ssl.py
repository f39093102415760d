# confluent-kafka (librdkafka) over SASL_SSL with SCRAM: produce N records
# idempotently, consume them back, and check a wrong password is refused.
# Usage: sasl_ssl.py BOOTSTRAP TOPIC CA_FILE USER PASSWORD MECHANISM
import sys
from confluent_kafka import Consumer, KafkaException, Producer

bootstrap, topic, ca, user, password, mechanism = sys.argv[1:7]
common = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_SSL",
    "ssl.ca.location": ca,
    "sasl.mechanisms": mechanism,
    "sasl.username": user,
    "sasl.password": password,
}
N = 1000
errors = []
p = Producer(dict(common, **{"enable.idempotence": True}))
for i in range(N):
    p.produce(topic, value=("v%d" % i).encode(), key=b"k",
              on_delivery=lambda err, msg: err and errors.append(err))
if p.flush(30) != 0 or errors:
    sys.exit("produce failed: %s" % errors[:3])

c = Consumer(dict(common, **{"group.id": "py-sasl", "auto.offset.reset": "earliest"}))
c.subscribe([topic])
got = []
while len(got) < N:
    m = c.poll(30)
    if m is None:
        sys.exit("consumed %d of %d" % (len(got), N))
    if m.error():
        raise KafkaException(m.error())
    if m.value() != b"seed":  # the record that created the topic
        got.append(m.value().decode())
c.close()
if got != ["v%d" % i for i in range(N)]:
    sys.exit("records out of order or duplicated")

bad = Producer(dict(common, **{"sasl.password": "wrong", "error_cb": lambda e: errors.append(e)}))
bad.produce(topic, value=b"x")
bad.flush(5)
if not any(e.code() == -169 for e in errors):  # _AUTHENTICATION
    sys.exit("a wrong password was not refused: %s" % errors)
print("ok: %d records over SASL_SSL %s" % (N, mechanism))
