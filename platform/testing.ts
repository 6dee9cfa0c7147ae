/**
 * `praxis/testing`: a whole Praxis platform inside a test process, for a service's own tests.
 *
 * @example
 * import { afterAll, beforeAll, expect, test } from 'vitest'
 * import { startTestPlatform, type TestPlatform } from 'praxis/testing'
 * import { createOrdersClient } from './generated/client.js'
 *
 * let platform: TestPlatform
 * beforeAll(async () => { platform = await startTestPlatform({ services: ['orders'] }) }, 120_000)
 * afterAll(() => platform?.close())
 *
 * test('an order is quoted', async () => {
 *   const run = await createOrdersClient(platform).startQuoteOrder({ item: 'book', quantity: 2 })
 *   expect((await run.wait()).status).toBe('completed')
 * })
 *
 * What starts: an embedded PostgreSQL in a temporary folder (or the database you name), the
 * platform's migrations, a tenant and its API key, the services deployed (after checking their
 * generated code is current, as `praxis deploy` does), the API on a free local port, and one
 * worker running the services' functions. Rule code runs in the same isolated-vm sandbox as in
 * production, which needs Node's `--no-node-snapshot` (vitest: `execArgv: ['--no-node-snapshot']`
 * with `pool: 'forks'`; `praxis init` writes that config). `close()` stops it all and deletes the
 * temporary database.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type pg from 'pg'
import pino from 'pino'
import { buildApi } from './api/index.js'
import { loadService, startWorker, type WorkerHandle } from './pools/index.js'
import { createPool, ensureDatabase, ensureTenant, migrate, startEmbedded, type EmbeddedServer } from './store/index.js'
import { deployBody } from './cli/deploy-body.js'
import { isService } from './cli/services.js'

export interface TestPlatformOptions {
  /**
   * Service folders (each with its `workflows.ts` and `functions.ts`; the folder's name is the
   * service's name), relative to the current directory, or as file URLs
   * (`new URL('.', import.meta.url)`). Each is deployed, and a worker runs their functions.
   */
  services: readonly (string | URL)[]
  /** The tenant the services are deployed to and the API key belongs to. Default `test`. */
  tenant?: string
  /**
   * A PostgreSQL database to use instead of a new embedded server: it is migrated and used as it
   * is (not emptied, not dropped at close). Default: an embedded PostgreSQL of its own, deleted
   * at close.
   */
  databaseUrl?: string
  /** Function invocations the worker runs at once. Default 4. */
  concurrency?: number
  /** The platform's own log lines (pino, on stderr). Default `silent`. */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

export interface TestPlatform {
  /** The API, e.g. `http://127.0.0.1:41234`. `{ url, apiKey }` is what a generated client takes. */
  readonly url: string
  /** The tenant's API key. */
  readonly apiKey: string
  readonly tenant: string
  /** The database the platform runs on (the embedded one's, unless `databaseUrl` was given). */
  readonly databaseUrl: string
  /** The services deployed, by name (their folder names). */
  readonly services: readonly string[]
  /** Stops the worker, the API and the embedded PostgreSQL, and deletes its data. */
  close(): Promise<void>
}

/** Starts a platform with `options.services` deployed and served; see the module's comment. */
export async function startTestPlatform(options: TestPlatformOptions): Promise<TestPlatform> {
  if (!process.execArgv.includes('--no-node-snapshot') && !(process.env.NODE_OPTIONS ?? '').includes('--no-node-snapshot')) {
    throw new Error("startTestPlatform: the rule sandbox (isolated-vm) needs Node's --no-node-snapshot flag, and this process runs without it. "
      + "With vitest, set test: { pool: 'forks', execArgv: ['--no-node-snapshot'] } in vitest.config.ts (praxis init writes one); elsewhere run node --no-node-snapshot, or set NODE_OPTIONS=--no-node-snapshot")
  }
  const dirs = options.services.map((s) => path.resolve(s instanceof URL ? fileURLToPath(s) : s))
  if (dirs.length === 0) throw new Error('startTestPlatform: name at least one service folder, e.g. startTestPlatform({ services: [\'orders\'] })')
  for (const dir of dirs) {
    if (!isService(dir)) {
      throw new Error(`startTestPlatform: ${dir} holds no workflows.ts or functions.ts; service folders are resolved from the current directory (${process.cwd()}), or pass new URL('.', import.meta.url)`)
    }
  }
  await canImportTypeScript()
  const log = pino({ level: options.logLevel ?? 'silent' }, pino.destination(2))
  const tenant = options.tenant ?? 'test'

  // Everything started so far, stopped in reverse if a later step fails.
  const cleanups: (() => Promise<unknown>)[] = []
  const unwind = async (): Promise<void> => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
    cleanups.length = 0
  }
  try {
    let databaseUrl = options.databaseUrl
    if (!databaseUrl) {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'praxis-test-'))
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }))
      const server: EmbeddedServer = await startEmbedded({ dataDir: path.join(dataDir, 'pg'), port: await freePort(), log })
      cleanups.push(() => server.stop())
      await ensureDatabase(server.adminUrl, 'praxis')
      databaseUrl = server.urlFor('praxis')
    }
    const pool: pg.Pool = createPool(databaseUrl, 20)
    cleanups.push(() => pool.end())
    await migrate(pool)
    const { apiKey } = await ensureTenant(pool, tenant)

    const api: FastifyInstance = await buildApi({ pool, databaseUrl, log })
    cleanups.push(() => api.close())
    const url = await api.listen({ host: '127.0.0.1', port: 0 })

    const services: string[] = []
    for (const dir of dirs) services.push(await deploy(api, apiKey, dir))

    const functions = []
    for (const dir of dirs) functions.push(...(await loadService(dir)).functions)
    let worker: WorkerHandle | undefined
    if (functions.length > 0) {
      worker = await startWorker({ pool, log, tenantId: tenant, functions, concurrency: options.concurrency ?? 4, leaseMs: 15_000, retention: false })
      // Stopped first: it lets running functions finish while the database is still there.
      cleanups.push(() => worker!.stop())
    }

    let closing: Promise<void> | undefined
    return {
      url, apiKey, tenant, databaseUrl, services,
      close: () => (closing ??= unwind()),
    }
  } catch (error) {
    await unwind()
    throw error
  }
}

/** Deploys the service in `dir` through the API, as `praxis deploy` does; returns its name. */
async function deploy(api: FastifyInstance, apiKey: string, dir: string): Promise<string> {
  const { service, body } = await deployBody(dir, (name, stale) => `generated code of service ${name} is stale (${stale.map((f) => path.relative(process.cwd(), f)).join(', ')}): run \`npx praxis codegen ${path.relative(process.cwd(), dir) || '.'}\` before testing it`)
  const response = await api.inject({
    method: 'POST',
    url: `/v1/services/${encodeURIComponent(service)}/deployments`,
    headers: { authorization: `Bearer ${apiKey}` },
    payload: body,
  })
  if (response.statusCode >= 300) {
    let detail = response.body
    try {
      const body = JSON.parse(response.body) as { error?: { code?: string; message?: string } }
      detail = `${body.error?.code ?? ''} ${body.error?.message ?? response.body}`.trim()
    } catch {
      // Not JSON: the body as it is.
    }
    throw new Error(`startTestPlatform: deploying service ${service} (${dir}) failed with HTTP ${response.statusCode}: ${detail}`)
  }
  return service
}

let typeScriptLoader: Promise<void> | undefined
/**
 * Workers import each service's functions.ts. Under the `praxis` command TypeScript loads through
 * tsx; in a test process (vitest runs the test's own files, not the modules Praxis imports) tsx is
 * registered here, once.
 */
function canImportTypeScript(): Promise<void> {
  typeScriptLoader ??= import('tsx/esm/api').then(({ register }) => void register())
  return typeScriptLoader
}

/** A TCP port free on this host now (for the embedded PostgreSQL). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}
