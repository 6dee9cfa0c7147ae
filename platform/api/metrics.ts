/**
 * Prometheus metrics (prom-client), read from PostgreSQL when scraped: queues (depth, age, running,
 * delayed, exhausted), live workers, and the invocations that finished since the previous read
 * (counts by status, failures by class, retries, durations), per tenant and pool; plus the API
 * process's own default metrics.
 *
 *   GET /metrics      the operator's view: every tenant's series and the process metrics. With
 *                     PRAXIS_METRICS_TOKEN set it answers `Authorization: Bearer <token>` only,
 *                     from anywhere; unset, it answers loopback requests only, and none that came
 *                     through a proxy (one carrying Forwarded / X-Forwarded-For / X-Real-IP).
 *   GET /v1/metrics   a tenant's view, with its API key (the /v1 hook in server.ts): the series
 *                     labelled with its own tenant and nothing else (no process metrics).
 *
 * Each API process has its own Registry (not prom-client's global one): counters and histograms
 * count what finished since that process was first scraped, so scrape one API process, or
 * aggregate with `max` across them, never `sum`. Gauges are the database's state at the read, the same from any
 * process. Reads are coalesced and at most one per `minIntervalMs`, so tenants polling /v1/metrics
 * cannot load the database more than one scraper does.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type pg from 'pg'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client'
import { PraxisError } from '../errors.js'
import { readMetrics, type MetricsRead } from '../queue/index.js'
import { parseTask } from '../store/index.js'
import { operation } from './openapi.js'
import { MetricsText } from './responses.js'

export interface MetricsOptions {
  /** The operator's bearer token for GET /metrics (PRAXIS_METRICS_TOKEN). Unset: loopback only. */
  token: string | undefined
  /** A worker whose heartbeat is older is not live (PRAXIS_LEASE_MS). */
  leaseMs: number
  /**
   * Invocations finished in the last `settleMs` are counted by the next read: their finishing
   * transaction (finished_at is its start) may not have committed yet.
   */
  settleMs: number
  /** A read younger than this is served again instead of reading the database (0: every scrape reads). */
  minIntervalMs: number
  /** statement_timeout of each metrics query. */
  queryTimeoutMs: number
}

export const DEFAULT_METRICS_OPTIONS: Readonly<MetricsOptions> = Object.freeze({
  token: undefined,
  leaseMs: 15_000,
  settleMs: 5_000,
  minIntervalMs: 1_000,
  queryTimeoutMs: 5_000,
})

/** Buckets of praxis_invocation_duration_seconds, from a fast function to an hour of retries. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600])

/** The classes a failure is counted under: its `kind`, or `other`. */
export const FAILURE_CLASSES = ['retryable', 'fatal', 'timeout', 'cancelled', 'other'] as const

/** The pool label of a tenant's own queues, which serve no function pool. */
const QUEUE_POOL = { evaluate: '@evaluate', due: '@due', retention: '@retention', reprocess: '@reprocess' } as const

/** Default process metrics: one set per process, shared by every API's registry. */
let processMetrics: Registry | undefined
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
  }
  return processMetrics
}

type Labels = { tenant: string; pool: string }

/** The metrics of one API process. */
export class PraxisMetrics {
  /** Praxis's metrics and the process's own. */
  readonly registry: Registry
  readonly #pool: pg.Pool
  readonly #options: MetricsOptions
  /** The metrics a tenant's view shows (each series carries a tenant label). */
  readonly #tenantMetrics: Metric[] = []
  /** End of the window read last (database clock); null before the first read. */
  #since: string | null = null
  #reading: Promise<void> | null = null
  #readAt = -Infinity

  readonly #depth: Gauge<'tenant' | 'pool'>
  readonly #delayed: Gauge<'tenant' | 'pool'>
  readonly #age: Gauge<'tenant' | 'pool'>
  readonly #locked: Gauge<'tenant' | 'pool'>
  readonly #exhausted: Gauge<'tenant' | 'pool'>
  readonly #workers: Gauge<'tenant' | 'pool'>
  readonly #invocations: Counter<'tenant' | 'pool' | 'status'>
  readonly #failures: Counter<'tenant' | 'pool' | 'class'>
  readonly #retries: Counter<'tenant' | 'pool'>
  readonly #duration: Histogram<'tenant' | 'pool'>
  readonly #readSeconds: Gauge

  constructor(pool: pg.Pool, options: MetricsOptions) {
    this.#pool = pool
    this.#options = options
    const own = new Registry()
    const registers = [own]
    const tenant = <M extends Metric>(metric: M): M => {
      this.#tenantMetrics.push(metric)
      return metric
    }
    const labelNames = ['tenant', 'pool'] as const
    this.#depth = tenant(new Gauge({ name: 'praxis_queue_depth', help: 'Jobs ready to run that no worker has taken yet, by tenant and pool (@evaluate, @due, @retention: the tenant\'s own queues)', labelNames, registers }))
    this.#age = tenant(new Gauge({ name: 'praxis_queue_oldest_age_seconds', help: 'How long the oldest ready job has waited, since it was added or came due (0 when none waits)', labelNames, registers }))
    this.#locked = tenant(new Gauge({ name: 'praxis_jobs_locked', help: 'Jobs a worker holds: running (or held by a dead worker until its lease runs out)', labelNames, registers }))
    this.#delayed = tenant(new Gauge({ name: 'praxis_queue_delayed', help: 'Jobs waiting for a later time: retries waiting for their backoff (@due), cron jobs (@retention)', labelNames, registers }))
    this.#exhausted = tenant(new Gauge({ name: 'praxis_jobs_exhausted', help: 'Jobs that spent all their attempts; the queue keeps them and never runs them again', labelNames, registers }))
    this.#workers = tenant(new Gauge({ name: 'praxis_workers', help: 'Live workers (heartbeat within the lease) serving the pool', labelNames, registers }))
    this.#invocations = tenant(new Counter({ name: 'praxis_invocations_total', help: 'Invocations finished, by status (succeeded, failed, cancelled), since this API process was first scraped', labelNames: ['tenant', 'pool', 'status'], registers }))
    this.#failures = tenant(new Counter({ name: 'praxis_invocation_failures_total', help: 'Invocations failed for good, by class: the failure\'s kind (retryable: its retries ran out; fatal; timeout; cancelled; other)', labelNames: ['tenant', 'pool', 'class'], registers }))
    this.#retries = tenant(new Counter({ name: 'praxis_invocation_retries_total', help: 'Attempts beyond the first, of the invocations finished (counted when the invocation finishes)', labelNames, registers }))
    this.#duration = tenant(new Histogram({ name: 'praxis_invocation_duration_seconds', help: 'Invocations finished, from creation to final result: queue wait, run time and retry delays together', labelNames, buckets: [...DURATION_BUCKETS], registers }))
    this.#readSeconds = new Gauge({ name: 'praxis_metrics_read_seconds', help: 'How long the last metrics read from PostgreSQL took', registers })
    this.registry = Registry.merge([own, processRegistry()])
  }

  /**
   * Reads the database unless a read younger than `minIntervalMs` exists; a read in progress is
   * shared. A failed read changes nothing (the next one covers its window).
   */
  refresh(): Promise<void> {
    if (this.#reading) return this.#reading
    if (performance.now() - this.#readAt < this.#options.minIntervalMs) return Promise.resolve()
    const started = performance.now()
    this.#reading = this.#read()
      .then(() => { this.#readAt = started })
      .finally(() => { this.#reading = null })
    return this.#reading
  }

  /** Resolves when no read is in progress. */
  async idle(): Promise<void> {
    await this.#reading?.catch(() => undefined)
  }

  /** Every series, in Prometheus' text format. */
  async operatorText(): Promise<string> {
    await this.refresh()
    return this.registry.metrics()
  }

  /** `tenantId`'s series only, in Prometheus' text format. */
  async tenantText(tenantId: string): Promise<string> {
    await this.refresh()
    const view = new Registry()
    for (const metric of this.#tenantMetrics) view.registerMetric(ownSeries(metric, tenantId))
    return view.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  async #read(): Promise<void> {
    const t0 = performance.now()
    const read = await readMetrics(this.#pool, {
      since: this.#since, settleMs: this.#options.settleMs, leaseMs: this.#options.leaseMs, timeoutMs: this.#options.queryTimeoutMs, bounds: DURATION_BUCKETS,
    })
    this.#apply(read)
    this.#since = read.window.to
    this.#readSeconds.set((performance.now() - t0) / 1000)
  }

  /** Sets the gauges to the read's state and adds what finished in its window (synchronous: a scrape never sees half of it). */
  #apply(read: MetricsRead): void {
    const key = (l: Labels): string => `${l.tenant}\u0000${l.pool}`
    const queues = new Map<string, Labels & { ready: number; delayed: number; locked: number; exhausted: number; age: number; invoke: boolean }>()
    for (const q of read.queues) {
      const task = parseTask(q.identifier)
      if (!task) continue
      const labels = { tenant: task.tenantId, pool: task.kind === 'invoke' ? task.pool : QUEUE_POOL[task.kind] }
      const row = queues.get(key(labels)) ?? { ...labels, ready: 0, delayed: 0, locked: 0, exhausted: 0, age: 0, invoke: task.kind === 'invoke' }
      row.ready += q.ready
      row.delayed += q.delayed
      row.locked += q.locked
      row.exhausted += q.exhausted
      row.age = Math.max(row.age, q.oldestSeconds)
      queues.set(key(labels), row)
    }
    for (const gauge of [this.#depth, this.#delayed, this.#age, this.#locked, this.#exhausted, this.#workers]) gauge.reset()
    for (const q of queues.values()) {
      const labels = { tenant: q.tenant, pool: q.pool }
      this.#depth.set(labels, q.ready)
      this.#delayed.set(labels, q.delayed)
      this.#age.set(labels, q.age)
      this.#locked.set(labels, q.locked)
      this.#exhausted.set(labels, q.exhausted)
      if (!q.invoke) continue
      // A known function pool shows 0 workers and 0 finished invocations rather than no series.
      if (q.pool !== '@child') this.#workers.set(labels, 0)
      for (const status of ['succeeded', 'failed'] as const) this.#invocations.inc({ ...labels, status }, 0)
      this.#retries.inc(labels, 0)
    }
    for (const w of read.workers) this.#workers.set({ tenant: w.tenantId, pool: w.pool }, w.live)

    for (const f of read.finished) {
      const labels = { tenant: f.tenantId, pool: f.pool }
      this.#invocations.inc({ ...labels, status: f.status }, f.count)
      if (f.status === 'failed') this.#failures.inc({ ...labels, class: f.failureClass }, f.count)
      if (f.retries > 0) this.#retries.inc(labels, f.retries)
      // The read groups durations by bucket, with their sum: observing the group's mean `count`
      // times gives the exact bucket counts and sum without moving every row out of the database.
      const value = withinBucket(f.seconds / f.count, f.bucket)
      for (let i = 0; i < f.count; i++) this.#duration.observe(labels, value)
    }
  }
}

/** `mean`, kept inside bucket `index` (`le` = DURATION_BUCKETS[index]) against rounding. */
function withinBucket(mean: number, index: number): number {
  const lower = index > 0 ? DURATION_BUCKETS[index - 1]! : -Infinity
  const upper = index < DURATION_BUCKETS.length ? DURATION_BUCKETS[index]! : Infinity
  if (mean > upper) return upper
  if (mean > lower) return mean
  return upper === Infinity ? lower * (1 + 1e-9) : upper
}

/** A view of `metric` with only the series labelled `tenant = tenantId`, for a tenant's registry. */
function ownSeries(metric: Metric, tenantId: string): Metric {
  const view = {
    name: (metric as unknown as { name: string }).name,
    get: async () => {
      const data = await metric.get()
      return { ...data, values: data.values.filter((v) => (v.labels as Record<string, unknown>).tenant === tenantId) }
    },
  }
  return view as unknown as Metric
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest()

/** Whether the request carries the operator token (compared in constant time). */
function hasToken(request: FastifyRequest, token: string): boolean {
  const given = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1]
  return given !== undefined && timingSafeEqual(sha256(given), sha256(token))
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/

/** A request from this host that no proxy forwarded (a proxy on this host connects from loopback too). */
function fromLoopback(request: FastifyRequest): boolean {
  const proxied = request.headers.forwarded !== undefined || request.headers['x-forwarded-for'] !== undefined || request.headers['x-real-ip'] !== undefined
  return !proxied && LOOPBACK.test(request.socket.remoteAddress ?? '')
}

/** Refuses a request for the operator's view unless it carries the token, or, with no token configured, comes from loopback. */
function checkOperator(request: FastifyRequest, token: string | undefined): void {
  if (token !== undefined) {
    if (!hasToken(request, token)) throw new PraxisError('PRX_UNAUTHORIZED', 'GET /metrics needs the operator token: send Authorization: Bearer <PRAXIS_METRICS_TOKEN> (a tenant sees its own metrics at GET /v1/metrics with its API key)')
    return
  }
  if (!fromLoopback(request)) {
    throw new PraxisError('PRX_UNAUTHORIZED', 'GET /metrics answers only requests from this host while PRAXIS_METRICS_TOKEN is unset: set it and send it as Authorization: Bearer <token> (a tenant sees its own metrics at GET /v1/metrics with its API key)')
  }
}

/**
 * Adds GET /metrics and GET /v1/metrics to the API (the /v1 hook in server.ts authenticates the
 * tenant's route). Nothing is read before the first scrape: counters count from it.
 */
export function registerMetrics(app: FastifyInstance, pool: pg.Pool, options: Partial<MetricsOptions> = {}): PraxisMetrics {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<MetricsOptions>
  const settings: MetricsOptions = { ...DEFAULT_METRICS_OPTIONS, ...given }
  const metrics = new PraxisMetrics(pool, settings)
  // A read in progress finishes before the API closes (its caller may end the pool next).
  app.addHook('onClose', async () => metrics.idle())
  const text = { description: 'every series, in Prometheus\' text format', schema: MetricsText, contentType: 'text/plain' }
  app.get('/metrics', {
    schema: operation({
      operationId: 'operatorMetrics', summary: "The operator's metrics: every tenant's series and the process's", tags: ['operations'], auth: 'operator',
      description: 'Queues, live workers and finished invocations per tenant and pool, read from PostgreSQL at most once a second, and the API process\'s default metrics. '
        + 'Needs the operator token (PRAXIS_METRICS_TOKEN); while none is configured, answers only loopback requests no proxy forwarded.',
      ok: { 200: text },
    }),
  }, async (request, reply) => {
    checkOperator(request, settings.token)
    const text = await metrics.operatorText()
    return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(text)
  })
  app.get('/v1/metrics', {
    schema: operation({
      operationId: 'tenantMetrics', summary: "Your tenant's metrics", tags: ['operations'], auth: 'tenant',
      description: 'The series labelled with your tenant only (queues, live workers, finished invocations per pool); no process metrics.',
      ok: { 200: { ...text, description: "your tenant's series, in Prometheus' text format" } },
    }),
  }, async (request, reply) => {
    if (!request.tenantId) throw new PraxisError('PRX_UNAUTHORIZED', 'missing API key: send Authorization: Bearer <key>')
    const text = await metrics.tenantText(request.tenantId)
    return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(text)
  })
  return metrics
}
