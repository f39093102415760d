'use strict'
// Zombie fencing: a transactional kafkajs producer (the zombie) writes
// "zombie-1" to partition 0 of TOPIC inside a transaction; a second producer
// with the same transactional id then initializes, which must fence the
// zombie and abort its transaction. The zombie then tries to send
// "zombie-2" and to commit; the successor writes "successor" and SENTINEL
// and commits. Writes the zombie's error types
// {"zombieSendError", "zombieCommitError"} (null if no error) to OUT.
// Usage: node fencing.js BROKER TOPIC OUT
const { SENTINEL, newKafka, transactionalProducer, main, writeResult } = require('./common')

const errorType = async action => {
  try {
    await action()
    return null
  } catch (err) {
    return err.type || err.name || String(err)
  }
}

main(60_000, async () => {
  const [broker, topic, out] = process.argv.slice(2)
  const kafka = newKafka(broker, 'kafkajs-fencing')
  const newProducer = () => transactionalProducer(kafka, 'kafkajs-fencing')

  const zombie = newProducer()
  await zombie.connect()
  const zombieTxn = await zombie.transaction()
  await zombieTxn.send({ topic, acks: -1, messages: [{ partition: 0, value: 'zombie-1' }] })

  const successor = newProducer()
  await successor.connect()
  // kafkajs sends InitProducerId for a transactional id on the first
  // transaction(), not on connect: this is what fences the zombie.
  const successorTxn = await successor.transaction()

  const zombieSendError = await errorType(() =>
    zombieTxn.send({ topic, acks: -1, messages: [{ partition: 0, value: 'zombie-2' }] }),
  )
  const zombieCommitError = await errorType(() => zombieTxn.commit())

  await successorTxn.send({
    topic,
    acks: -1,
    messages: [
      { partition: 0, value: 'successor' },
      { partition: 0, value: SENTINEL },
    ],
  })
  await successorTxn.commit()
  await successor.disconnect()
  await zombie.disconnect()
  writeResult(out, { zombieSendError, zombieCommitError })
})
