/** `praxis worker`: one process serving the function pools of the given services. */
import pino from 'pino'
import type { Config } from '../config.js'
import { loadService, startWorker } from '../pools/index.js'
import { createPool } from '../store/index.js'

/** Where `praxis dev`'s embedded PostgreSQL listens, for workers started beside it. */
export const devDatabaseUrl = (config: Config): string => config.databaseUrl ?? `postgres://postgres:praxis@127.0.0.1:${config.embeddedPort}/praxis`

export async function runWorker(config: Config, dirs: string[]): Promise<number> {
  const log = pino({ level: config.logLevel }, pino.destination(2))
  const services = await Promise.all(dirs.map((d) => loadService(d)))
  const functions = services.flatMap((s) => s.functions)
  if (functions.length === 0) throw new Error(`no functions found in ${dirs.join(', ')}: a service exports its defineFunction(...) values from functions.ts`)
  const pool = createPool(devDatabaseUrl(config), config.workerConcurrency + 4)
  const worker = await startWorker({ pool, log, functions, concurrency: config.workerConcurrency, leaseMs: config.leaseMs })
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  log.info({ stats: worker.stats }, 'worker stopping')
  await worker.stop()
  await pool.end()
  return 0
}
