// The benchmark's local DynamoDB for `--dynamodb dynalite` (benchmarks/local_dynamodb.py):
// dynalite 4.0.0 as pinned by package-lock.json, with dynalite-4.0.0.patch applied
// (typed equality of lists, maps and numbers in conditions, and
// ReturnValuesOnConditionCheckFailure=ALL_OLD), in memory, tables ACTIVE at once, on
// loopback. Idle keep-alive connections are kept 65 s: Node's default 5 s closes
// connections the benchmark's proxy still reuses.
// Usage: node serve.js PORT
'use strict'
const dynalite = require('dynalite')

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node serve.js PORT')
  process.exit(2)
}
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
server.keepAliveTimeout = 65000
server.headersTimeout = 66000
server.listen(port, '127.0.0.1', () => console.log('dynalite on 127.0.0.1:' + port))
