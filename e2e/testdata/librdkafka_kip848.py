"""librdkafka (confluent_kafka) consumers with group.protocol=consumer (KIP-848).

Two consumers share a group: the first consumes alone, the second joins
(the broker moves partitions to it once the first revoked them), the first
leaves, and the second finishes. Every record must be consumed and the
group's committed offsets must reach each partition's end. Prints the
counts; exits non-zero on any mismatch.
Usage: librdkafka_kip848.py BOOTSTRAP TOPIC GROUP RECORDS
"""
import sys
import time
from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, group, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def consumer(name):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    return c


seen = {}
got = {"c1": 0, "c2": 0}


def poll(c, name):
    msgs = c.consume(num_messages=50, timeout=0.2)
    for m in msgs:
        if m.error():
            raise SystemExit(f"{name}: {m.error()}")
        seen[m.value()] = seen.get(m.value(), 0) + 1
        got[name] += 1
    if msgs:
        c.commit(asynchronous=False)


def until(cond, what, consumers, limit=90):
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}: {len(seen)} of {want} records")
        for name, c in consumers:
            poll(c, name)


c1 = consumer("c1")
until(lambda: len(seen) >= want // 4, "c1's first records", [("c1", c1)])
c2 = consumer("c2")
until(lambda: len(c2.assignment()) > 0, "c2 to get partitions", [("c1", c1), ("c2", c2)])
both = len(c1.assignment()), len(c2.assignment())
c1.close()  # leaves the group (member epoch -1)
until(lambda: len(seen) == want, "every record", [("c2", c2)])

parts = [TopicPartition(topic, p) for p in sorted(c2.list_topics(topic).topics[topic].partitions)]
committed = c2.committed(parts, timeout=10)
for tp in committed:
    lo, hi = c2.get_watermark_offsets(tp, timeout=10)
    if tp.offset != hi:
        raise SystemExit(f"partition {tp.partition}: committed {tp.offset}, end {hi}")
c2.close()
print(f"{len(seen)} records consumed ({got['c1']} by c1, {got['c2']} by c2); "
      f"partitions while both were in: c1 {both[0]}, c2 {both[1]}; committed offsets at the end")
