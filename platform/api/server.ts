/**
 * The REST API (Cosmos "Optimus"): deploy bundles, start instances, read facts and timelines,
 * deliver signals. Built apart from `listen` so tests drive it with `inject`.
 */
import { createHash } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import type pg from 'pg'
import type { Logger } from 'pino'
import type { Json } from '../../sdk/index.js'
import { BundleCache, deployBundle, Evaluator, previewDeploy, rollbackService, serviceManifest, type Manifest } from '../engine/index.js'
import type { Limits } from '../config.js'
import { PraxisError } from '../errors.js'
import { listReprocessing, reprocessingProgress } from '../queue/index.js'
import { getActiveBundle, getInstance, listBundles, listInstances, noticeUnserved, readTimeline, resolveWorkflow, signalDelivered, tenantForKey, unservedPools } from '../store/index.js'
import { DeployBody, GetInstanceQuery, DryRunQuery, InstanceParams, ListQuery, RollbackBody, RunParams, ServiceParams, SignalBody, SignalParams, StartBody, TimelineQuery, WorkflowParams } from './schemas.js'
import * as Reply from './responses.js'
import { clientErrorHandler, DEFAULT_LIMITS, errorBody, frameworkErrors, installEdge, type EdgeLimits } from './edge.js'
import { EndedInstanceWaiters } from './waiters.js'
import { registerMetrics, type MetricsOptions } from './metrics.js'
import { operation, registerDocs } from './openapi.js'
import { checkDocumentedStatuses, serializerCompiler, validatorCompiler } from './validation.js'

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
  /** Serve the OpenAPI document (`/docs/json`) and its reference page (`/docs`); default true. */
  docs?: boolean
  /**
   * Check every reply against its route's documented response schema (responses.ts), and that its
   * status is documented; a reply that fails answers 500 `PRX_INTERNAL` saying why. For tests:
   * it parses every JSON reply once more. Default false.
   */
  checkResponses?: boolean
}

declare module 'fastify' {
  interface FastifyRequest { tenantId: string }
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

  // Request parts are validated with the routes' zod schemas (validation.ts); the same schemas,
  // and the response schemas (responses.ts), make the OpenAPI document (openapi.ts).
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler(options.checkResponses ?? false))
  if (options.checkResponses) checkDocumentedStatuses(app)
  if (options.docs !== false) await registerDocs(app)
  const api = app.withTypeProvider<ZodTypeProvider>()

  api.get('/v1/health', {
    schema: operation({
      operationId: 'health', summary: 'Whether the API and its database answer', tags: ['operations'], auth: 'public',
      ok: { 200: { description: 'the API answers and PostgreSQL answers a query', schema: Reply.Health } },
    }),
  }, async () => {
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

  api.post('/v1/services/:service/deployments', {
    bodyLimit: limits.deployBodyBytes,
    schema: operation({
      operationId: 'deployService', summary: 'Deploy a version of a service', tags: ['services'], auth: 'tenant',
      description: 'Uploads the bundled rules (`praxis deploy` builds them and sends `generated/manifest.json` with them). The bundle is loaded in the tenant\'s sandbox and checked; '
        + 'an added or changed rule reaches running instances (and, for workflows that opt in, completed ones) in a background reprocessing run. '
        + 'With `?dryRun=true` nothing is stored: the answer says what would change and whom each added or changed rule would fire on now. The body may be up to 25 MiB.',
      params: ServiceParams, querystring: DryRunQuery, body: DeployBody,
      ok: {
        201: { description: 'deployed: a new version is active', schema: Reply.Deployed },
        200: { description: 'with `?dryRun=true`, the preview; else the code and rules were those of the active version and nothing changed', schema: Reply.Deployed.or(Reply.DeployPreview) },
      },
      errors: ['PRX_BUNDLE_INVALID', 'PRX_FACTS_VERSION_LOWERED', 'PRX_RULE_TIMEOUT', 'PRX_RULE_MEMORY', 'PRX_RULE_THREW', 'PRX_LIMIT_RETRY', 'PRX_LIMIT_TIMEOUT'],
    }),
  }, async (request, reply) => {
    const { service } = request.params
    const body = request.body
    const hash = createHash('sha256').update(body.code).digest('hex')
    if (body.codeHash && body.codeHash !== hash) throw new PraxisError('PRX_BAD_REQUEST', 'codeHash does not match the code: the upload was corrupted, send it again')
    // ?dryRun=true: what the deploy would change and whom each added or changed rule would reach now; nothing is stored.
    if (request.query.dryRun) return previewDeploy(pool, bundles, request.tenantId, service, body.code, hash, body.manifest ?? null)
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
  api.post('/v1/services/:service/rollback', {
    schema: operation({
      operationId: 'rollbackService', summary: "Make an older version's rules active again", tags: ['services'], auth: 'tenant',
      description: 'Deploys the code and manifest of `version` (default: the one before the active version) as a new version, reached like any deploy. '
        + 'With `?dryRun=true` nothing is stored. The body may be empty.',
      params: ServiceParams, querystring: DryRunQuery, body: RollbackBody,
      ok: {
        201: { description: 'rolled back: a new version with the older code is active', schema: Reply.RolledBack },
        200: { description: 'with `?dryRun=true`, the preview; else nothing changed (the rules are those of the active version)', schema: Reply.RolledBack.or(Reply.RollbackPreview) },
      },
      errors: ['PRX_SERVICE_NOT_FOUND', 'PRX_RUN_NOT_FOUND', 'PRX_BUNDLE_INVALID', 'PRX_FACTS_VERSION_LOWERED', 'PRX_RULE_TIMEOUT', 'PRX_RULE_MEMORY', 'PRX_RULE_THREW', 'PRX_LIMIT_RETRY', 'PRX_LIMIT_TIMEOUT'],
    }),
  }, async (request, reply) => {
    const { service } = request.params
    const { version } = request.body
    const r = await rollbackService(pool, bundles, request.tenantId, service, version, { dryRun: request.query.dryRun })
    if ('preview' in r) return { ...r.preview, from: r.from }
    const d = r.deployment
    return reply.status(d.created ? 201 : 200).send({ service, version: d.bundle.version, from: r.from, created: d.created, reevaluating: d.reevaluating, changes: d.changes, reprocessing: d.reprocessing })
  })

  // Always on: a deploy's background walk over old work, its progress (praxis deploy --wait).
  api.get('/v1/services/:service/reprocessing', {
    schema: operation({
      operationId: 'listReprocessing', summary: "A service's latest reprocessing runs", tags: ['reprocessing'], auth: 'tenant',
      params: ServiceParams,
      ok: { 200: { description: 'the runs, newest first (empty for a service your tenant never deployed)', schema: Reply.ReprocessingRuns } },
    }),
  }, async (request) => {
    const { service } = request.params
    return { runs: await listReprocessing(pool, request.tenantId, service) }
  })
  api.get('/v1/services/:service/reprocessing/:run', {
    schema: operation({
      operationId: 'getReprocessing', summary: 'How far a reprocessing run got', tags: ['reprocessing'], auth: 'tenant',
      params: RunParams,
      ok: { 200: { description: "the run's progress", schema: Reply.ReprocessingRun } },
      errors: ['PRX_RUN_NOT_FOUND'],
    }),
  }, async (request) => {
    const { service, run } = request.params
    const progress = await reprocessingProgress(pool, request.tenantId, service, run)
    if (!progress) throw new PraxisError('PRX_RUN_NOT_FOUND', `service ${service} has no reprocessing run ${run} in your tenant: list them with GET /v1/services/${service}/reprocessing`)
    return progress
  })

  // The active version's manifest: what `praxis codegen --from <server> --service <name>` reads.
  api.get('/v1/services/:service/manifest', {
    schema: operation({
      operationId: 'getManifest', summary: "The active version's service manifest", tags: ['services'], auth: 'tenant',
      description: 'Its functions and workflows with their JSON Schemas: what `praxis codegen --from <server> --service <name>` generates a typed client from.',
      params: ServiceParams,
      ok: { 200: { description: 'the manifest, with the version it belongs to', schema: Reply.DeployedManifest } },
      errors: ['PRX_SERVICE_NOT_FOUND'],
    }),
  }, async (request) => {
    const { service } = request.params
    const bundle = await getActiveBundle(pool, request.tenantId, service)
    if (!bundle) throw new PraxisError('PRX_SERVICE_NOT_FOUND', `no deployed service ${service} in your tenant: deploy it first (praxis deploy <service-dir>)`)
    // As codegen wrote it when it came with the deploy (declaration order kept), else from the bundle.
    const manifest = bundle.generated_manifest ? JSON.parse(bundle.generated_manifest) as object : serviceManifest(bundle.manifest as Manifest, [])
    return { ...manifest, version: bundle.version }
  })

  api.get('/v1/services/:service/deployments', {
    schema: operation({
      operationId: 'listDeployments', summary: "A service's versions", tags: ['services'], auth: 'tenant',
      params: ServiceParams,
      ok: { 200: { description: 'its versions, newest first, and which one is active', schema: Reply.DeploymentList } },
    }),
  }, async (request) => {
    const { service } = request.params
    const rows = await listBundles(pool, request.tenantId, service)
    // No bundle id: ids come from one sequence for all tenants, and would tell how often others deploy.
    return { deployments: rows.map((r) => ({ version: r.version, active: r.active, codeHash: r.code_hash, createdAt: r.created_at })) }
  })

  api.post('/v1/workflows/:workflow/instances', {
    schema: operation({
      operationId: 'startInstance', summary: 'Start an instance of a workflow', tags: ['instances'], auth: 'tenant',
      description: 'The workflow is named alone when its name is unique in your tenant, else as `service.workflow`. `input` is checked against the workflow\'s input schema and '
        + 'its `init` runs in the sandbox. With an `idempotencyKey`, a retried start answers the instance it started (200, `created: false`).',
      params: WorkflowParams, body: StartBody,
      ok: {
        201: { description: 'started', schema: Reply.StartedInstance },
        200: { description: 'the idempotency key had started this instance already', schema: Reply.StartedInstance },
      },
      errors: ['PRX_INPUT_INVALID', 'PRX_WORKFLOW_NOT_FOUND', 'PRX_WORKFLOW_AMBIGUOUS', 'PRX_BUNDLE_INVALID', 'PRX_RULE_TIMEOUT', 'PRX_RULE_MEMORY', 'PRX_RULE_THREW',
        'PRX_FUNCTION_UNKNOWN', 'PRX_LIMIT_CALLS', 'PRX_LIMIT_FACTS', 'PRX_LIMIT_INPUT', 'PRX_LIMIT_PRIORITY', 'PRX_LIMIT_RETRY', 'PRX_LIMIT_TIMEOUT'],
    }),
  }, async (request, reply) => {
    const { workflow } = request.params
    const body = request.body
    const matches = await resolveWorkflow(pool, request.tenantId, workflow)
    if (matches.length === 0) throw new PraxisError('PRX_WORKFLOW_NOT_FOUND', `no deployed workflow ${workflow}: deploy its service first (praxis deploy <service-dir>)`)
    if (matches.length > 1) throw new PraxisError('PRX_WORKFLOW_AMBIGUOUS', `workflow ${workflow} exists in services ${matches.map((m) => m.service).join(', ')}: name it as service.workflow`)
    const started = await evaluator.start(request.tenantId, matches[0]!, body.input, body.idempotencyKey ?? null)
    const view = await getInstance(pool, request.tenantId, started.id)
    return reply.status(started.created ? 201 : 200).send({ id: started.id, status: view!.status, revision: view!.revision, created: started.created })
  })

  api.get('/v1/instances/:id', {
    schema: operation({
      operationId: 'getInstance', summary: 'An instance: status, facts, result', tags: ['instances'], auth: 'tenant',
      description: 'With `?wait=completed`, a running instance is waited for (long poll, up to `timeoutMs`) and read when it ends or the time is up; the answer is the same either way, so look at `status`.',
      params: InstanceParams, querystring: GetInstanceQuery,
      ok: { 200: { description: 'the instance, and the pools it waits on with no live worker', schema: Reply.InstanceDetail } },
      errors: ['PRX_INSTANCE_NOT_FOUND'],
    }),
  }, async (request) => {
    const { id } = request.params
    const query = request.query
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

  api.get('/v1/instances', {
    schema: operation({
      operationId: 'listInstances', summary: "Your tenant's instances, newest first", tags: ['instances'], auth: 'tenant',
      description: '`workflow` filters by `name` or `service.name`. Pages are keyset-paginated: pass `nextCursor` back as `cursor`.',
      querystring: ListQuery,
      ok: { 200: { description: 'a page of instances', schema: Reply.InstanceList } },
    }),
  }, async (request) => {
    const query = request.query
    const after = query.cursor ? decodeCursor(query.cursor) : undefined
    const rows = await listInstances(pool, request.tenantId, { workflow: query.workflow, status: query.status, limit: query.limit, after })
    const last = rows.length === query.limit ? rows[rows.length - 1] : undefined
    return { instances: rows, nextCursor: last ? Buffer.from(last.id).toString('base64url') : null }
  })

  api.get('/v1/instances/:id/timeline', {
    schema: operation({
      operationId: 'getTimeline', summary: "An instance's timeline, oldest first", tags: ['instances'], auth: 'tenant',
      description: 'Rules fired, calls scheduled and their results, signals, pools waited on. Pass the last `id` (or `nextCursor`) as `after` to read on.',
      params: InstanceParams, querystring: TimelineQuery,
      ok: { 200: { description: 'a page of timeline entries', schema: Reply.Timeline } },
      errors: ['PRX_INSTANCE_NOT_FOUND'],
    }),
  }, async (request) => {
    const { id } = request.params
    const query = request.query
    const view = await getInstance(pool, request.tenantId, id)
    if (!view) throw new PraxisError('PRX_INSTANCE_NOT_FOUND', `no instance ${id} in your tenant`)
    await waitingOf(request.tenantId, view)
    const entries = await readTimeline(pool, request.tenantId, id, { after: query.after, limit: query.limit })
    return { entries, nextCursor: entries.length === query.limit ? entries[entries.length - 1]!.id : null }
  })

  api.post('/v1/instances/:id/signals/:name', {
    schema: operation({
      operationId: 'sendSignal', summary: 'Deliver a signal to an instance', tags: ['signals'], auth: 'tenant',
      description: '`payload` is checked against the workflow\'s schema for the signal, and the signal is evaluated in the background. '
        + 'With a `signalId`, a retried signal is answered as a duplicate, even after the first delivery ended the instance.',
      params: SignalParams, body: SignalBody,
      ok: { 202: { description: 'accepted (or a duplicate: `duplicate: true`)', schema: Reply.SignalAccepted } },
      errors: ['PRX_INPUT_INVALID', 'PRX_SIGNAL_UNKNOWN', 'PRX_INSTANCE_NOT_FOUND', 'PRX_WORKFLOW_NOT_FOUND', 'PRX_INSTANCE_ENDED', 'PRX_BUNDLE_INVALID', 'PRX_RULE_TIMEOUT', 'PRX_RULE_MEMORY', 'PRX_RULE_THREW'],
    }),
  }, async (request, reply) => {
    const { id, name } = request.params
    const body = request.body
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
