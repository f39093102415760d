'use strict'
// An idempotent kafkajs producer writes the numbers 0..COUNT-1, number i to
// partition i % PARTITIONS, then SENTINEL to every partition; meanwhile a
// kafkajs consumer in group GROUP reads the topic until every partition's
// SENTINEL, committing as it goes. Writes {"records": [...]} to OUT.
// Usage: node idempotent.js BROKER TOPIC PARTITIONS COUNT GROUP OUT
const { CompressionTypes, Partitioners } = require('kafkajs')
const { SENTINEL, newKafka, consumeUntilSentinels, main, writeResult, intArg } = require('./common')

const MESSAGES_PER_SEND = 100

main(60_000, async () => {
  const [broker, topic, partitionsArg, countArg, groupId, out] = process.argv.slice(2)
  const partitions = intArg(partitionsArg, 'PARTITIONS')
  const count = intArg(countArg, 'COUNT')
  const kafka = newKafka(broker, 'kafkajs-idempotent')

  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const consumed = consumeUntilSentinels(consumer, partitions)

  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  for (let first = 0, send = 0; first < count; first += MESSAGES_PER_SEND, send++) {
    const messages = []
    for (let i = first; i < Math.min(count, first + MESSAGES_PER_SEND); i++) {
      messages.push({ partition: i % partitions, value: String(i) })
    }
    // Every other send is gzip'd, so the broker also takes kafkajs's
    // compressed batches (with producer ids and sequences).
    const compression = send % 2 === 0 ? CompressionTypes.None : CompressionTypes.GZIP
    await producer.send({ topic, acks: -1, compression, messages })
  }
  const sentinels = []
  for (let p = 0; p < partitions; p++) sentinels.push({ partition: p, value: SENTINEL })
  await producer.send({ topic, acks: -1, messages: sentinels })
  await producer.disconnect()

  const records = await consumed
  // disconnect commits what the last batch resolved, then leaves the group.
  await consumer.disconnect()
  writeResult(out, { records })
})
