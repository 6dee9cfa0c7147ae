/**
 * A Praxis API server in a process of its own, for test/hostile.test.ts: hostile rule code that
 * crashes, hangs or blocks its host takes down this process, not the test runner, and the test
 * measures /v1/health on this process's real event loop. Workers (one per tenant) start and stop
 * in this process on request from the parent (IPC), as `praxis worker` would run them.
 *
 * Environment: DATABASE_URL (the test database). Prints nothing; sends `{ ready: address }`.
 * Deliberately installs no unhandledRejection/uncaughtException handler: Node's defaults are
 * what a production server has.
 */
import pino from 'pino'
import { buildApi } from '../../platform/api/index.js'
import { loadService, startWorker, type WorkerHandle, type WorkerOptions } from '../../platform/pools/index.js'
import { createPool } from '../../platform/store/index.js'

export type HostRequest =
  | { id: number; op: 'worker'; key: string; dir: string; tenantId: string; exclude: string[] }
  | { id: number; op: 'stop'; key: string }
export type HostReply = { id: number; ok: true } | { id: number; ok: false; error: string } | { ready: string }

const url = process.env.DATABASE_URL
if (!url) throw new Error('DATABASE_URL is required')
const pool = createPool(url, 40)
const log = pino({ level: process.env.HOSTILE_LOG ?? 'error' }, pino.destination(2))
const api = await buildApi({ pool, databaseUrl: url, log })
const workers = new Map<string, WorkerHandle>()
const send = (reply: HostReply): void => void process.send?.(reply)

process.on('message', (request: HostRequest) => {
  void (async () => {
    try {
      if (request.op === 'worker') {
        const { functions } = await loadService(request.dir)
        const options = {
          pool, log, tenantId: request.tenantId, concurrency: 2, leaseMs: 15_000,
          functions: functions.filter((f) => !request.exclude.includes(f.name)),
        }
        workers.set(request.key, await startWorker(options as WorkerOptions))
      } else {
        const worker = workers.get(request.key)
        workers.delete(request.key)
        await worker?.stop()
      }
      send({ id: request.id, ok: true })
    } catch (error) {
      send({ id: request.id, ok: false, error: (error as Error).stack ?? String(error) })
    }
  })()
})
process.on('disconnect', () => process.exit(0))

const address = await api.listen({ host: '127.0.0.1', port: 0 })
send({ ready: address })
