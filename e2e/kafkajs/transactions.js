'use strict'
// A transactional kafkajs producer writes TXNS transactions of PER_TXN
// records "<txn>-<n>" (record n to partition n % PARTITIONS), committing odd
// transactions and aborting even ones, then commits one more transaction
// holding SENTINEL for every partition. Meanwhile a read_committed kafkajs
// consumer in group GROUP reads until every SENTINEL. Writes
// {"records": [...]} (what the consumer saw) to OUT.
// Usage: node transactions.js BROKER TOPIC PARTITIONS TXNS PER_TXN GROUP OUT
const { SENTINEL, newKafka, transactionalProducer, consumeUntilSentinels, main, writeResult, intArg } = require('./common')

main(60_000, async () => {
  const [broker, topic, partitionsArg, txnsArg, perTxnArg, groupId, out] = process.argv.slice(2)
  const partitions = intArg(partitionsArg, 'PARTITIONS')
  const txns = intArg(txnsArg, 'TXNS')
  const perTxn = intArg(perTxnArg, 'PER_TXN')
  const kafka = newKafka(broker, 'kafkajs-transactions')

  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const consumed = consumeUntilSentinels(consumer, partitions)

  const producer = transactionalProducer(kafka, 'kafkajs-transactions')
  await producer.connect()
  for (let t = 0; t < txns; t++) {
    const txn = await producer.transaction()
    // Two sends per transaction: the second adds no new partitions but
    // continues each partition's sequence inside the transaction.
    const half = Math.ceil(perTxn / 2)
    for (const [from, to] of [[0, half], [half, perTxn]]) {
      const messages = []
      for (let n = from; n < to; n++) messages.push({ partition: n % partitions, value: `${t}-${n}` })
      if (messages.length > 0) await txn.send({ topic, acks: -1, messages })
    }
    if (t % 2 === 1) await txn.commit()
    else await txn.abort()
  }
  const txn = await producer.transaction()
  const sentinels = []
  for (let p = 0; p < partitions; p++) sentinels.push({ partition: p, value: SENTINEL })
  await txn.send({ topic, acks: -1, messages: sentinels })
  await txn.commit()
  await producer.disconnect()

  const records = await consumed
  await consumer.disconnect()
  writeResult(out, { records })
})
