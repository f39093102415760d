'use strict'
// Helpers shared by the kafkajs scripts that e2e/kafkajs_test.go runs.
// Records a script consumed go to a JSON file for the Go test to check;
// kafkajs's own logs go to stderr, which the Go test prints on failure.
const fs = require('fs')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

// SENTINEL marks the end of a partition: a consumer is done with a
// partition once it has seen this value there, so no script has to guess
// when "nothing more is coming".
const SENTINEL = 'end'

// The scripts limit retries on purpose, so that a broker error fails them
// quickly with its reason instead of being retried until the deadline;
// kafkajs warns about that for every idempotent producer.
const EXPECTED_WARNING = 'Limiting retries for the idempotent producer may invalidate EoS guarantees'

function stderrLogCreator() {
  return ({ namespace, label, log }) => {
    const { message, timestamp, ...extra } = log
    if (message === EXPECTED_WARNING) return
    process.stderr.write(`${timestamp} ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  }
}

function newKafka(broker, clientId) {
  return new Kafka({
    clientId,
    brokers: [broker],
    // KAFKAJS_LOG_LEVEL=DEBUG logs every request and response.
    logLevel: logLevel[process.env.KAFKAJS_LOG_LEVEL || 'WARN'] ?? logLevel.WARN,
    logCreator: stderrLogCreator,
    retry: { initialRetryTime: 100, retries: 8 },
  })
}

// consumeUntilSentinels runs a connected, subscribed consumer and resolves
// with every non-sentinel record once each of the topic's partitions has
// delivered SENTINEL. A consumer crash rejects: it means kafkajs met a
// broker answer it could not handle, which the test must report.
async function consumeUntilSentinels(consumer, partitions) {
  const records = []
  const finished = new Set()
  let resolveDone
  const done = new Promise(resolve => { resolveDone = resolve })
  const crashed = new Promise((_, reject) => {
    consumer.on(consumer.events.CRASH, e => reject(new Error(`consumer crashed: ${e.payload.error.stack || e.payload.error}`)))
  })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const value = message.value.toString()
      if (value === SENTINEL) {
        finished.add(partition)
        if (finished.size === partitions) resolveDone()
        return
      }
      records.push({ partition, offset: message.offset, value })
    },
  })
  await Promise.race([done, crashed])
  return records
}

// main runs fn with a deadline; any error or the deadline fails the script
// with a non-zero exit status and the reason on stderr.
function main(deadlineMs, fn) {
  const timer = setTimeout(() => {
    process.stderr.write(`FAIL: no result within ${deadlineMs} ms\n`)
    process.exit(2)
  }, deadlineMs)
  fn().then(
    () => {
      clearTimeout(timer)
      process.exit(0)
    },
    err => {
      process.stderr.write(`FAIL: ${err && err.stack ? err.stack : err}\n`)
      process.exit(1)
    },
  )
}

function writeResult(path, result) {
  fs.writeFileSync(path, JSON.stringify(result))
}

function intArg(s, name) {
  const n = Number.parseInt(s, 10)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: not a count: ${s}`)
  return n
}

// transactionalProducer is a kafkajs transactional producer as every
// script here uses it: idempotent (kafkajs requires one request in flight
// for that) and with the default partitioner.
function transactionalProducer(kafka, transactionalId) {
  return kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
}

module.exports = { SENTINEL, newKafka, transactionalProducer, consumeUntilSentinels, main, writeResult, intArg }
