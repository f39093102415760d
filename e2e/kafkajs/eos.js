'use strict'
// Exactly-once consume-transform-produce with kafkajs: a read_committed
// consumer in group GROUP reads IN (autoCommit off, eachBatch) and, for
// each batch, a transactional producer writes "out-<value>" to the same
// partition of OUT and commits the batch's input offsets with sendOffsets
// in the same transaction. Every ABORT_EVERY-th batch is first processed in
// a transaction that is aborted ("aborted-out-<value>", offsets included).
// Each committed transaction checks that the group's committed offset is
// exactly the one the last committed transaction sent: committed offsets
// were applied, aborted ones were not. Every partition of IN ends with
// SENTINEL, which is not transformed; the script stops once every
// partition's SENTINEL has been committed. Writes
// {"batches", "transactions", "aborted", "transformed"} to OUT_FILE.
// Usage: node eos.js BROKER IN OUT PARTITIONS GROUP OUT_FILE
const { SENTINEL, newKafka, transactionalProducer, main, writeResult, intArg } = require('./common')

const ABORT_EVERY = 5
// Small fetches make many small batches, hence many transactions.
const MAX_BYTES_PER_PARTITION = 512

main(60_000, async () => {
  const [broker, inTopic, outTopic, partitionsArg, groupId, outFile] = process.argv.slice(2)
  const partitions = intArg(partitionsArg, 'PARTITIONS')
  const kafka = newKafka(broker, 'kafkajs-eos')

  const admin = kafka.admin()
  await admin.connect()
  const committedOffset = async partition => {
    const [topicOffsets] = await admin.fetchOffsets({ groupId, topics: [inTopic] })
    const found = topicOffsets.partitions.find(p => p.partition === partition)
    return found ? found.offset : '-1'
  }

  const producer = transactionalProducer(kafka, 'kafkajs-eos')
  await producer.connect()

  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxWaitTimeInMs: 500,
    maxBytesPerPartition: MAX_BYTES_PER_PARTITION,
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [inTopic], fromBeginning: true })

  const stats = { batches: 0, transactions: 0, aborted: 0, transformed: 0 }
  // partition -> the input offset this script last committed there
  const lastCommitted = new Map()
  const finished = new Set()
  let resolveDone, rejectDone
  const done = new Promise((resolve, reject) => {
    resolveDone = resolve
    rejectDone = reject
  })
  consumer.on(consumer.events.CRASH, e => rejectDone(new Error(`consumer crashed: ${e.payload.error.stack || e.payload.error}`)))

  const processBatch = async batch => {
    const messages = batch.messages
    if (messages.length === 0) return
    const next = (BigInt(messages[messages.length - 1].offset) + 1n).toString()
    const offsets = {
      consumerGroupId: groupId,
      topics: [{ topic: inTopic, partitions: [{ partition: batch.partition, offset: next }] }],
    }
    const outputs = messages
      .filter(m => m.value.toString() !== SENTINEL)
      .map(m => ({ partition: batch.partition, value: `out-${m.value}` }))

    if (stats.batches++ % ABORT_EVERY === 0) {
      const txn = await producer.transaction()
      if (outputs.length > 0) {
        await txn.send({ topic: outTopic, acks: -1, messages: outputs.map(m => ({ ...m, value: `aborted-${m.value}` })) })
      }
      await txn.sendOffsets(offsets)
      await txn.abort()
      stats.aborted++
    }

    const txn = await producer.transaction()
    if (outputs.length > 0) {
      await txn.send({ topic: outTopic, acks: -1, messages: outputs })
      // EndTxn answers before the transaction's offsets are applied (in
      // Kafka too), but AddPartitionsToTxn, sent by this send, succeeds only
      // once the previous transaction has completed. So the group's offset
      // is now exactly what the last committed transaction sent.
      const want = lastCommitted.get(batch.partition) ?? '-1'
      const got = await committedOffset(batch.partition)
      if (got !== want) {
        throw new Error(`${inTopic}/${batch.partition}: the group's committed offset is ${got}, the last committed transaction sent ${want}`)
      }
    }
    await txn.sendOffsets(offsets)
    await txn.commit()
    lastCommitted.set(batch.partition, next)
    stats.transactions++
    stats.transformed += outputs.length
    if (messages.some(m => m.value.toString() === SENTINEL)) {
      finished.add(batch.partition)
      if (finished.size === partitions) resolveDone()
    }
  }

  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      try {
        await processBatch(batch)
      } catch (err) {
        // Fail the script rather than let kafkajs retry the batch: any
        // error here is something the test must report.
        rejectDone(err)
        throw err
      }
    },
  })
  await done
  await consumer.disconnect()
  await producer.disconnect()
  await admin.disconnect()
  writeResult(outFile, stats)
})
