/**
 * `praxis pools <service-dir…> --tenant ID [--min N] [--max N] [--idle-ms MS]`: a supervisor of
 * one tenant's worker processes, `min..max` per function pool of the services, printing each
 * scale event, start, death and restart as it happens (see platform/pools/supervisor.ts).
 */
import path from 'node:path'
import pino from 'pino'
import type { Config } from '../config.js'
import { formatEvent, Supervisor } from '../pools/index.js'
import { cliDatabaseUrl, openCliDatabase } from './database.js'
import { resolveWorkerTenant, type WorkerTenant } from './worker.js'

export interface PoolsArgs extends WorkerTenant { min?: number | undefined; max?: number | undefined; idleMs?: number | undefined }

/** A whole-number flag, or undefined when absent. */
export function wholeFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(value)}`)
  return n
}

export async function runPools(config: Config, dirs: string[], args: PoolsArgs, out: (line: string) => void): Promise<number> {
  const log = pino({ level: config.logLevel }, pino.destination(2))
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  const url = cliDatabaseUrl(config)
  const db = await openCliDatabase(config, 'praxis pools', 2)
  try {
    const tenantId = await resolveWorkerTenant(db, args)
    const t0 = Date.now()
    // Events of the first starts come before start() returns: held until the header is out.
    let held: string[] | null = []
    const supervisor = new Supervisor({
      tenantId, dirs, databaseUrl: url, db, log,
      min: args.min, max: args.max, idleMs: args.idleMs, depthPerWorker: config.workerConcurrency,
      onEvent: (event) => {
        const line = `${new Date().toISOString()}  ${formatEvent(event)}`
        if (held) held.push(line)
        else out(line)
      },
    })
    const specs = await supervisor.start()
    const { min, max } = supervisor.policy
    out(`supervising tenant ${tenantId}: ${specs.map((s) => `${s.pool} (${s.dirs.map((d) => path.relative('.', d) || '.').join(', ')})`).join(', ')}; ${min}..${max} workers per pool`)
    for (const line of held) out(line)
    held = null
    const ready = supervisor.ready().then(() => true)
    if (await Promise.race([ready, stopRequested.then(() => false)])) {
      const n = (k: number) => `${k} worker${k === 1 ? '' : 's'}`
      out(`ready in ${Date.now() - t0} ms: ${supervisor.status().map((s) => `${s.pool} ${n(s.ready)}`).join(', ')} registered; Ctrl-C stops them`)
    }
    await stopRequested
    out('stopping: each worker finishes its running functions first…')
    await supervisor.stop()
  } finally {
    await db.end()
  }
  return 0
}
