/**
 * The API in a process of its own, for tests that kill it (test/chaos.test.ts):
 *
 *   DATABASE_URL=… PORT=0 node --no-node-snapshot --import tsx test/support/api-process.ts
 *
 * builds the API with `buildApi`, listens on 127.0.0.1:PORT (0: any free port) and prints
 * `praxis api ready: http://127.0.0.1:<port>` on stdout once it takes requests. PRAXIS_LEASE_MS is
 * the worker lease it reports with; LOG_LEVEL (default warn) its log level, on stderr. With
 * PRAXIS_SUPERVISED=1 it exits when its stdin closes (the test that started it is gone).
 *
 * With PRAXIS_API_SPARE=1 it is a warm spare: it loads its modules (what takes seconds on a loaded
 * machine), prints `praxis api loaded`, and builds the API and listens only once a line arrives on
 * its stdin. A test that kills the server starts the next one from a spare, so the outage is the
 * API's own start (a new pool, bundle cache and LISTEN connection), not Node's module loading.
 */
import { createInterface } from 'node:readline'
import pino from 'pino'
import { buildApi } from '../../platform/api/index.js'
import { createPool } from '../../platform/store/index.js'

const url = process.env.DATABASE_URL
if (!url) throw new Error('api-process needs DATABASE_URL')
const port = Number(process.env.PORT ?? 0)

// Under a test that spawned it with PRAXIS_SUPERVISED=1, stdin is the test's pipe: closed, the
// test is gone, and this server goes too (as `praxis worker` does under a supervisor).
const stdin = process.env.PRAXIS_SUPERVISED === '1' || process.env.PRAXIS_API_SPARE === '1' ? createInterface({ input: process.stdin }) : null
stdin?.once('close', () => process.exit(0))
if (process.env.PRAXIS_API_SPARE === '1') {
  process.stdout.write('praxis api loaded\n')
  await new Promise<void>((resolve) => stdin!.once('line', () => resolve()))
}

const pool = createPool(url, 10)
const api = await buildApi({
  pool,
  databaseUrl: url,
  log: pino({ level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination(2)),
  workerLeaseMs: Number(process.env.PRAXIS_LEASE_MS ?? 15_000),
})
const address = await api.listen({ port, host: '127.0.0.1' })
process.stdout.write(`praxis api ready: ${address}\n`)

const stop = (): void => {
  void api.close().then(() => pool.end()).finally(() => process.exit(0))
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
