/** A whole platform on a test database: API (driven with inject), a worker, a tenant and its key. */
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { buildApi } from '../../platform/api/index.js'
import { buildBundle, readGeneratedManifest } from '../../platform/engine/index.js'
import { loadService, startWorker, type WorkerHandle } from '../../platform/pools/index.js'
import { ensureTenant } from '../../platform/store/index.js'
import { createTestDatabase, type TestDatabase } from './database.js'

export interface TestPlatform {
  db: TestDatabase
  api: FastifyInstance
  apiKey: string
  workers: WorkerHandle[]
  /** Sends a request with the tenant's key; returns status and parsed body. */
  request(method: 'GET' | 'POST', url: string, body?: unknown, apiKey?: string): Promise<{ status: number; body: any }>
  deploy(serviceDir: string, as?: string): Promise<{ status: number; body: any }>
  /** A worker for the platform's tenant ('acme'), or for `tenantId`. */
  startWorker(serviceDir: string, options?: { leaseMs?: number; concurrency?: number; tenantId?: string }): Promise<WorkerHandle>
  close(): Promise<void>
}

export const silent = pino({ level: 'silent' })

/** The tenant a test platform's key, deploys and workers belong to. */
export const TENANT = 'acme'

export async function startTestPlatform(): Promise<TestPlatform> {
  const db = await createTestDatabase()
  const { apiKey } = await ensureTenant(db.pool, TENANT)
  const api = await buildApi({ pool: db.pool, databaseUrl: db.url, log: pino({ level: process.env.TEST_LOG ?? 'silent' }), checkResponses: true })
  await api.ready()
  const workers: WorkerHandle[] = []
  const platform: TestPlatform = {
    db, api, apiKey, workers,
    async request(method, url, body, key = apiKey) {
      const response = await api.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(body === undefined ? {} : { payload: body as object }) })
      return { status: response.statusCode, body: response.body ? JSON.parse(response.body) : null }
    },
    async deploy(serviceDir, as) {
      const { code } = await buildBundle(serviceDir)
      const service = as ?? (await loadService(serviceDir)).name
      const manifest = as ? null : await readGeneratedManifest(serviceDir)
      return platform.request('POST', `/v1/services/${service}/deployments`, { code, ...(manifest ? { manifest } : {}) })
    },
    async startWorker(serviceDir, options = {}) {
      const { functions } = await loadService(serviceDir)
      const worker = await startWorker({ pool: db.pool, log: silent, tenantId: options.tenantId ?? TENANT, functions, concurrency: options.concurrency ?? 4, leaseMs: options.leaseMs ?? 15_000 })
      workers.push(worker)
      return worker
    },
    async close() {
      for (const w of workers) await w.stop()
      await api.close()
      await db.drop()
    },
  }
  return platform
}
