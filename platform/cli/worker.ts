/** `praxis worker`: one process serving one tenant's function pools of the given services. */
import type pg from 'pg'
import pino from 'pino'
import { qualifiedPool } from '../../sdk/index.js'
import type { Config } from '../config.js'
import { loadService, startWorker, WORKER_READY } from '../pools/index.js'
import { evaluateTask, tenantForKey } from '../store/index.js'
import { openCliDatabase } from './database.js'

/** Signals this close to the first are the same request to stop. */
const SAME_STOP_MS = 1000

/** How the tenant was given: --tenant, --api-key, or (when neither flag is) PRAXIS_TENANT or PRAXIS_API_KEY. */
export interface WorkerTenant { tenant?: string | undefined; apiKey?: string | undefined }

const NO_TENANT = 'praxis worker serves one tenant and runs only its jobs: pass --tenant ID, or --api-key KEY (one of the tenant\'s API keys), or set PRAXIS_TENANT (or PRAXIS_API_KEY)'

/** The tenant a worker is to serve, checked against the database. */
export async function resolveWorkerTenant(pool: Pick<pg.Pool, 'query'>, given: WorkerTenant, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const flagged = given.tenant !== undefined || given.apiKey !== undefined
  const tenant = given.tenant ?? (flagged ? undefined : env.PRAXIS_TENANT || undefined)
  const apiKey = given.apiKey ?? (flagged ? undefined : env.PRAXIS_API_KEY || undefined)
  if (tenant === undefined && apiKey === undefined) throw new Error(NO_TENANT)
  let fromKey: string | null = null
  if (apiKey !== undefined) {
    fromKey = await tenantForKey(pool, apiKey)
    if (!fromKey) throw new Error('the API key given to praxis worker belongs to no tenant: pass one of the tenant\'s keys, or --tenant ID')
  }
  if (tenant !== undefined) {
    try {
      evaluateTask(tenant)
    } catch {
      throw new Error(`--tenant ${JSON.stringify(tenant)} is not a tenant id (lower-case letters, digits and "-")`)
    }
    if (fromKey !== null && fromKey !== tenant) throw new Error(`the API key belongs to tenant ${fromKey}, not ${tenant}: pass one of the two`)
    const { rowCount } = await pool.query('select 1 from praxis.tenants where id = $1', [tenant])
    if (!rowCount) throw new Error(`tenant ${tenant} does not exist${tenant === 'dev' ? ': start `praxis dev` first, it creates it' : ''}`)
    return tenant
  }
  return fromKey!
}

/** `pools`: serve only these (`service:pool`) of the services' pools (`--pool`, as the supervisor starts workers). */
export async function runWorker(config: Config, dirs: string[], given: WorkerTenant = {}, options: { pools?: string[] | undefined } = {}): Promise<number> {
  const log = pino({ level: config.logLevel }, pino.destination(2))
  const services = await Promise.all(dirs.map((d) => loadService(d)))
  const all = services.flatMap((s) => s.functions)
  if (all.length === 0) throw new Error(`no functions found in ${dirs.join(', ')}: a service exports its defineFunction(...) values from functions.ts`)
  const only = options.pools && options.pools.length > 0 ? new Set(options.pools) : null
  const functions = only ? all.filter((f) => only.has(qualifiedPool(f))) : all
  const unknown = only ? [...only].filter((p) => !all.some((f) => qualifiedPool(f) === p)) : []
  if (unknown.length > 0) throw new Error(`--pool ${unknown.join(', ')}: no function of ${dirs.join(', ')} is in it; their pools are ${[...new Set(all.map((f) => qualifiedPool(f)))].join(', ')}`)
  if (given.tenant === undefined && given.apiKey === undefined && !process.env.PRAXIS_TENANT && !process.env.PRAXIS_API_KEY) throw new Error(NO_TENANT)
  // Listen before starting: a job can start running before startWorker returns, and a signal
  // then must stop the worker gracefully too, not end the process.
  // Functions running then finish (each within its own timeout) and their results are recorded;
  // a second signal leaves at once, and their jobs run again elsewhere once the lease runs out.
  // Signals within SAME_STOP_MS of the first are the same stop: Ctrl-C under `praxis dev` brings
  // the terminal's and dev's, a process group's SIGTERM the group's and the supervisor's. One
  // listener for the whole run: with a `once` listener gone and the next not yet added, a second
  // signal found none and ended the process mid-function.
  let stopAt = 0
  const stopRequested = new Promise<void>((resolve) => {
    const stop = (): void => {
      if (stopAt === 0) {
        stopAt = Date.now()
        resolve()
      }
    }
    const onSignal = (): void => {
      if (stopAt === 0) return stop()
      if (Date.now() - stopAt < SAME_STOP_MS) return
      log.warn('second signal: leaving now; the functions still running will run again on another worker after the lease')
      process.exit(130)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    // Under a supervisor (`praxis pools`, `praxis dev`) stdin is its pipe: closed, the supervisor is gone.
    if (process.env.PRAXIS_SUPERVISED === '1') process.stdin.once('end', stop).once('error', stop).resume()
  })
  const pool = await openCliDatabase(config, 'praxis worker', config.workerConcurrency + 4)
  try {
    const tenantId = await resolveWorkerTenant(pool, given)
    const worker = await startWorker({ pool, log, tenantId, functions, concurrency: config.workerConcurrency, leaseMs: config.leaseMs, limits: config.limits, retention: config.retention, caps: config.caps })
    // Registered in praxis.workers and taking jobs: what a supervisor waits for before counting it.
    process.stdout.write(`${WORKER_READY} ${worker.id} (tenant ${tenantId}; pools ${[...new Set(functions.map((f) => qualifiedPool(f)))].sort().join(', ')})\n`)
    await stopRequested
    log.info({ stats: worker.stats }, 'worker stopping: running functions finish first (signal again to leave at once)')
    await worker.stop()
  } finally {
    await pool.end()
  }
  return 0
}
