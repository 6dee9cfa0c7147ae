/**
 * The REST API (Cosmos "Optimus"): deploy bundles, start instances, read facts and timelines,
 * deliver signals. Built apart from `listen` so tests drive it with `inject`.
 */
import { createHash } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import type pg from 'pg'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { Json } from '../../sdk/index.js'
import { BundleCache, deployBundle, Evaluator, previewDeploy, rollbackService, serviceManifest, type Manifest } from '../engine/index.js'
import type { Limits } from '../config.js'
import { PraxisError } from '../errors.js'
import { listReprocessing, reprocessingProgress } from '../queue/index.js'
import { getActiveBundle, getInstance, listBundles, listInstances, noticeUnserved, readTimeline, resolveWorkflow, signalDelivered, tenantForKey, unservedPools } from '../store/index.js'
import { DeployBody, GetInstanceQuery, DryRunQuery, InstanceParams, ListQuery, RollbackBody, RunParams, ServiceParams, SignalBody, SignalParams, StartBody, TimelineQuery, WorkflowParams } from './schemas.js'
import { clientErrorHandler, DEFAULT_LIMITS, errorBody, frameworkErrors, installEdge, type EdgeLimits } from './edge.js'
import { EndedInstanceWaiters } from './waiters.js'
import { registerMetrics, type MetricsOptions } from './metrics.js'

export interface ApiOptions {
  pool: pg.Pool
  databaseUrl: string
  log?: Logger | false
  /** Request limits at the edge (see edge.ts); each defaults to DEFAULT_LIMITS. */
  limits?: Partial<EdgeLimits>
  /** Limits on rule code and what it asks for (platform/config.ts); each defaults to DEFAULT_LIMITS there. */
  ruleLimits?: Partial<Limits>
  /**
   * GET /metrics (operator) and GET /v1/metrics (a tenant's own series), see metrics.ts: the
   * operator token (PRAXIS_METRICS_TOKEN; unset: loopback only) and read settings. The lease
   * defaults to workerLeaseMs.
   */
  metrics?: Partial<MetricsOptions>
  /**
   * A worker whose heartbeat is older than this is not live (PRAXIS_LEASE_MS, default 15 s): an
   * instance waiting on a pool no live worker serves says so (`waiting`, `pool.unserved`).
   */
  workerLeaseMs?: number
}

declare module 'fastify' {
  interface FastifyRequest { tenantId: string }
}

function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value ?? {})
  if (!result.success) {
    const issues = result.error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message, code: i.code }))
    throw new PraxisError('PRX_BAD_REQUEST', `invalid ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { details: issues })
  }
  return result.data
}

/** Builds the API. Call `ready()` (or `listen`) before use and `close()` after. */
export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const { pool } = options
  const bundles = new BundleCache({ limits: options.ruleLimits ?? {} })
  const evaluator = new Evaluator(pool, bundles)
  const waiters = new EndedInstanceWaiters(options.databaseUrl)
  const limits: EdgeLimits = { ...DEFAULT_LIMITS, ...options.limits }
  const leaseMs = options.workerLeaseMs ?? 15_000
  // A running instance's calls on pools no live worker serves: in its view (`waiting`), and said
  // once per pool in its timeline. Read on these reads, never on an evaluation's path.
  const waitingOf = (tenantId: string, view: { id: string; status: string }) =>
    (view.status === 'running' || view.status === 'paused' ? noticeUnserved(pool, tenantId, view.id, leaseMs) : Promise.resolve([]))
  const app: FastifyInstance = Fastify({
    ...(options.log ? { loggerInstance: options.log as FastifyBaseLogger } : {}),
    bodyLimit: limits.bodyBytes,
    routerOptions: { maxParamLength: limits.paramChars },
    http: { maxHeaderSize: limits.headerBytes },
    frameworkErrors: frameworkErrors(limits),
    clientErrorHandler: clientErrorHandler(limits),
  })
  app.decorateRequest('tenantId', '')
  installEdge(app, limits)

  app.addHook('onReady', () => waiters.start())
  app.addHook('onClose', async () => {
    await waiters.stop()
    await evaluator.close()
  })

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof PraxisError) return reply.status(error.status).send(errorBody(error.code, error.message, error.details ?? null))
    const e = error as { statusCode?: number; message: string; code?: string }
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = request.routeOptions.bodyLimit ?? limits.bodyBytes
      return reply.status(413).send(errorBody('PRX_BODY_TOO_LARGE', `the body is larger than ${limit} bytes`, { limit }))
    }
    if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send(errorBody('PRX_BAD_REQUEST', e.message, { fastify: e.code ?? null }))
    request.log.error({ err: error }, 'request failed')
    return reply.status(500).send({ error: { code: 'PRX_INTERNAL', message: 'internal error; the server log has the details', details: null } })
  })
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ error: { code: 'PRX_NOT_FOUND', message: `no route ${request.method} ${request.url}`, details: null } }))

  app.get('/v1/health', async () => {
    await pool.query('select 1')
    return { status: 'ok' }
  })

  app.addHook('onRequest', async (request: FastifyRequest) => {
    const route = request.url.split('?')[0]!
    if (!route.startsWith('/v1/') || route === '/v1/health') return
    const header = request.headers.authorization ?? ''
    const key = /^Bearer (\S+)$/.exec(header)?.[1]
    const tenantId = key ? await tenantForKey(pool, key) : null
    if (!tenantId) throw new PraxisError('PRX_UNAUTHORIZED', key ? 'unknown API key' : 'missing API key: send Authorization: Bearer <key>')
    request.tenantId = tenantId
  })

  app.post('/v1/services/:service/deployments', { bodyLimit: limits.deployBodyBytes }, async (request, reply) => {
    const { service } = parse(ServiceParams, request.params, 'params')
    const body = parse(DeployBody, request.body, 'body')
    const hash = createHash('sha256').update(body.code).digest('hex')
    if (body.codeHash && body.codeHash !== hash) throw new PraxisError('PRX_BAD_REQUEST', 'codeHash does not match the code: the upload was corrupted, send it again')
    // ?dryRun=true: what the deploy would change and whom each added or changed rule would reach now; nothing is stored.
    if (parse(DryRunQuery, request.query, 'query').dryRun) return previewDeploy(pool, bundles, request.tenantId, service, body.code, hash, body.manifest ?? null)
    const d = await deployBundle(pool, bundles, request.tenantId, service, body.code, hash, body.manifest ?? null)
    // Its functions' pools (known from the generated manifest) that no live worker serves yet.
    const unserved = await unservedPools(pool, request.tenantId, (body.manifest?.functions ?? []).map((f) => `${service}:${f.pool}`), leaseMs)
    return reply.status(d.created ? 201 : 200).send({
      service, version: d.bundle.version, created: d.created, reevaluating: d.reevaluating, changes: d.changes, reprocessing: d.reprocessing,
      workflows: d.manifest.workflows.map((w) => ({ name: w.name, rules: w.rules.map((r) => ({ name: r.name, fingerprint: r.fingerprint })) })),
      unservedPools: unserved,
    })
  })

  // An older version's rules made active again: a deploy of its code and manifest (praxis rollback).
  app.post('/v1/services/:service/rollback', async (request, reply) => {
    const { service } = parse(ServiceParams, request.params, 'params')
    const { version } = parse(RollbackBody, request.body ?? {}, 'body')
    const dryRun = parse(DryRunQuery, request.query, 'query').dryRun
    const r = await rollbackService(pool, bundles, request.tenantId, service, version, { dryRun })
    if ('preview' in r) return { ...r.preview, from: r.from }
    const d = r.deployment
    return reply.status(d.created ? 201 : 200).send({ service, version: d.bundle.version, from: r.from, created: d.created, reevaluating: d.reevaluating, changes: d.changes, reprocessing: d.reprocessing })
  })

  // Always on: a deploy's background walk over old work, its progress (praxis deploy --wait).
  app.get('/v1/services/:service/reprocessing', async (request) => {
    const { service } = parse(ServiceParams, request.params, 'params')
    return { runs: await listReprocessing(pool, request.tenantId, service) }
  })
  app.get('/v1/services/:service/reprocessing/:run', async (request) => {
    const { service, run } = parse(RunParams, request.params, 'params')
    const progress = await reprocessingProgress(pool, request.tenantId, service, run)
    if (!progress) throw new PraxisError('PRX_RUN_NOT_FOUND', `service ${service} has no reprocessing run ${run} in your tenant: list them with GET /v1/services/${service}/reprocessing`)
    return progress
  })

  // The active version's manifest: what `praxis codegen --from <server> --service <name>` reads.
  app.get('/v1/services/:service/manifest', async (request) => {
    const { service } = parse(ServiceParams, request.params, 'params')
    const bundle = await getActiveBundle(pool, request.tenantId, service)
    if (!bundle) throw new PraxisError('PRX_SERVICE_NOT_FOUND', `no deployed service ${service} in your tenant: deploy it first (praxis deploy <service-dir>)`)
    // As codegen wrote it when it came with the deploy (declaration order kept), else from the bundle.
    const manifest = bundle.generated_manifest ? JSON.parse(bundle.generated_manifest) as object : serviceManifest(bundle.manifest as Manifest, [])
    return { ...manifest, version: bundle.version }
  })

  app.get('/v1/services/:service/deployments', async (request) => {
    const { service } = parse(ServiceParams, request.params, 'params')
    const rows = await listBundles(pool, request.tenantId, service)
    // No bundle id: ids come from one sequence for all tenants, and would tell how often others deploy.
    return { deployments: rows.map((r) => ({ version: r.version, active: r.active, codeHash: r.code_hash, createdAt: r.created_at })) }
  })

  app.post('/v1/workflows/:workflow/instances', async (request, reply) => {
    const { workflow } = parse(WorkflowParams, request.params, 'params')
    const body = parse(StartBody, request.body, 'body')
    const matches = await resolveWorkflow(pool, request.tenantId, workflow)
    if (matches.length === 0) throw new PraxisError('PRX_WORKFLOW_NOT_FOUND', `no deployed workflow ${workflow}: deploy its service first (praxis deploy <service-dir>)`)
    if (matches.length > 1) throw new PraxisError('PRX_WORKFLOW_AMBIGUOUS', `workflow ${workflow} exists in services ${matches.map((m) => m.service).join(', ')}: name it as service.workflow`)
    const started = await evaluator.start(request.tenantId, matches[0]!, body.input, body.idempotencyKey ?? null)
    const view = await getInstance(pool, request.tenantId, started.id)
    return reply.status(started.created ? 201 : 200).send({ id: started.id, status: view!.status, revision: view!.revision, created: started.created })
  })

  app.get('/v1/instances/:id', async (request) => {
    const { id } = parse(InstanceParams, request.params, 'params')
    const query = parse(GetInstanceQuery, request.query, 'query')
    const read = async () => {
      const view = await getInstance(pool, request.tenantId, id)
      if (!view) throw new PraxisError('PRX_INSTANCE_NOT_FOUND', `no instance ${id} in your tenant`)
      return view
    }
    let view = await read()
    if (query.wait && view.status === 'running' && query.timeoutMs > 0) {
      await waiters.wait(request.tenantId, id, query.timeoutMs, async () => (view = await read()).status !== 'running')
      view = await read()
    }
    return { ...view, waiting: await waitingOf(request.tenantId, view) }
  })

  app.get('/v1/instances', async (request) => {
    const query = parse(ListQuery, request.query, 'query')
    const after = query.cursor ? decodeCursor(query.cursor) : undefined
    const rows = await listInstances(pool, request.tenantId, { workflow: query.workflow, status: query.status, limit: query.limit, after })
    const last = rows.length === query.limit ? rows[rows.length - 1] : undefined
    return { instances: rows, nextCursor: last ? Buffer.from(last.id).toString('base64url') : null }
  })

  app.get('/v1/instances/:id/timeline', async (request) => {
    const { id } = parse(InstanceParams, request.params, 'params')
    const query = parse(TimelineQuery, request.query, 'query')
    const view = await getInstance(pool, request.tenantId, id)
    if (!view) throw new PraxisError('PRX_INSTANCE_NOT_FOUND', `no instance ${id} in your tenant`)
    await waitingOf(request.tenantId, view)
    const entries = await readTimeline(pool, request.tenantId, id, { after: query.after, limit: query.limit })
    return { entries, nextCursor: entries.length === query.limit ? entries[entries.length - 1]!.id : null }
  })

  app.post('/v1/instances/:id/signals/:name', async (request, reply) => {
    const { id, name } = parse(SignalParams, request.params, 'params')
    const body = parse(SignalBody, request.body, 'body')
    const view = await getInstance(pool, request.tenantId, id)
    if (!view) throw new PraxisError('PRX_INSTANCE_NOT_FOUND', `no instance ${id} in your tenant`)
    // A retried signal is a duplicate even after the first delivery ended the instance.
    if (body.signalId && (await signalDelivered(pool, request.tenantId, id, body.signalId))) return reply.status(202).send({ delivered: false, duplicate: true })
    if (view.status !== 'running' && view.status !== 'paused') throw new PraxisError('PRX_INSTANCE_ENDED', `instance ${id} is ${view.status}; it takes no more signals`)
    const [target] = await resolveWorkflow(pool, request.tenantId, `${view.service}.${view.workflow}`)
    if (!target) throw new PraxisError('PRX_WORKFLOW_NOT_FOUND', `workflow ${view.service}.${view.workflow} is no longer deployed`)
    await evaluator.checkSignal(request.tenantId, target.bundleId, view.workflow, name, body.payload)
    const delivered = await evaluator.signal(request.tenantId, id, name, body.payload as Json, body.signalId ?? null)
    return reply.status(202).send({ delivered, duplicate: !delivered })
  })

  registerMetrics(app, pool, { leaseMs: options.workerLeaseMs, ...options.metrics })

  return app
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString()
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return id
  throw new PraxisError('PRX_BAD_REQUEST', 'invalid cursor: pass nextCursor from the previous page unchanged')
}
