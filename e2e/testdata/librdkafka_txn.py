"""librdkafka (confluent_kafka) transactions against oncelog.

Commits odd transactions and aborts even ones, then checks that a
read_committed consumer sees exactly the committed records and a
read_uncommitted one sees all of them. Exits non-zero on any mismatch.
Usage: librdkafka_txn.py BOOTSTRAP TOPIC
"""
import sys
from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
TXNS, PER_TXN = 20, 25

p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "py-txn", "linger.ms": 5})
p.init_transactions(30)
for i in range(TXNS):
    p.begin_transaction()
    for j in range(PER_TXN):
        p.produce(topic, value=f"{i}-{j}".encode())
    # abort_transaction purges unsent messages: flush so aborted data
    # really reaches the log and read_committed has something to hide.
    p.flush(30)
    if i % 2 == 1:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def read_all(isolation, want):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "py-check-" + isolation,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    c.assign([TopicPartition(topic, 0, 0)])
    values, eof_polls = [], 0
    while True:
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof_polls += 1
                if len(values) >= want or eof_polls > 3:
                    break
                continue
            raise SystemExit(f"consume error: {m.error()}")
        values.append(m.value().decode())
    c.close()
    return values


committed = read_all("read_committed", TXNS // 2 * PER_TXN)
want = [f"{i}-{j}" for i in range(TXNS) if i % 2 == 1 for j in range(PER_TXN)]
if committed != want:
    raise SystemExit(f"read_committed saw {len(committed)} records, want {len(want)} committed ones in order; first extra/missing: {sorted(set(committed) ^ set(want))[:5]}")
everything = read_all("read_uncommitted", TXNS * PER_TXN)
if len(everything) != TXNS * PER_TXN or len(set(everything)) != len(everything):
    raise SystemExit(f"read_uncommitted saw {len(everything)} records, want {TXNS * PER_TXN}")
print(f"ok: {len(committed)} committed, {len(everything)} total")
