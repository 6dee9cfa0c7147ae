/**
 * The one place that reads the environment. Everything else receives a typed `Config`.
 *
 * | variable | default | meaning |
 * | --- | --- | --- |
 * | DATABASE_URL | (embedded) | an external PostgreSQL; without it an embedded one starts in PRAXIS_DATA_DIR |
 * | PRAXIS_DATA_DIR | .praxis | where the embedded PostgreSQL keeps its data |
 * | PRAXIS_PG_PORT | 54329 | port of the embedded PostgreSQL |
 * | PORT / HOST | 3000 / 127.0.0.1 | where the API listens |
 * | PRAXIS_WORKER_CONCURRENCY | 8 | function invocations one worker process runs at once |
 * | PRAXIS_LEASE_MS | 15000 | a worker silent this long is dead: its jobs run again elsewhere |
 * | PRAXIS_CAPS | (none) | concurrency caps of a worker process, nested in PRAXIS_WORKER_CONCURRENCY: `service=N` and `service:pool=N`, comma-separated |
 * | LOG_LEVEL | info | pino level |
 * | PRAXIS_METRICS_TOKEN | (unset) | bearer token of the operator's `GET /metrics` (every tenant's series; 16+ characters); unset: it answers loopback requests only, never proxied ones |
 *
 * Limits on tenant code and what it asks for (each breach fails only the instance concerned, with
 * its own error code; docs/errors.md lists them):
 *
 * | variable | default | meaning | error code |
 * | --- | --- | --- | --- |
 * | PRAXIS_RULE_TIMEOUT_MS | 1000 | time one evaluation (or init, or signal check) of rule code may take | PRX_RULE_TIMEOUT |
 * | PRAXIS_RULE_MEMORY_MB | 64 | heap cap of one tenant bundle's isolate | PRX_RULE_MEMORY |
 * | PRAXIS_BUNDLE_LOAD_MS | 5000 | time a bundle's top-level code and self-description may take at load | PRX_BUNDLE_INVALID |
 * | PRAXIS_SANDBOX_CAPACITY | 64 | tenant isolates kept warm per process (LRU) | |
 * | PRAXIS_MAX_CALLS | 1000 | function calls and child starts one evaluation may make | PRX_LIMIT_CALLS |
 * | PRAXIS_MAX_FACTS_BYTES | 1048576 | size of an instance's facts as JSON | PRX_LIMIT_FACTS |
 * | PRAXIS_MAX_DEPTH | 64 | nesting depth of facts, call inputs and results | PRX_LIMIT_FACTS / PRX_LIMIT_INPUT |
 * | PRAXIS_MAX_INPUT_BYTES | 262144 | size of one call's input as JSON | PRX_LIMIT_INPUT |
 * | PRAXIS_MAX_PRIORITY | 100 | calls take priorities from -N to N | PRX_LIMIT_PRIORITY |
 * | PRAXIS_MAX_RETRY_ATTEMPTS | 25 | a function's retry attempts | PRX_LIMIT_RETRY |
 * | PRAXIS_MIN_RETRY_DELAY_MS | 10 | shortest retry delay a function may ask for | PRX_LIMIT_RETRY |
 * | PRAXIS_MAX_RETRY_DELAY_MS | 86400000 | longest retry delay | PRX_LIMIT_RETRY |
 * | PRAXIS_MAX_FUNCTION_TIMEOUT_MS | 3600000 | longest function timeout | PRX_LIMIT_TIMEOUT |
 *
 * Retention of finished data (platform/store/retention.ts; docs/architecture.md, "Storage and retention"): each tenant's
 * workers purge it by age in a graphile-worker cron job. Days may be fractions; `off` keeps the
 * data for ever. A tenant's own settings (`praxis tenants retention`) override the three days.
 *
 * | variable | default | meaning |
 * | --- | --- | --- |
 * | PRAXIS_RETAIN_FINISHED_DAYS | 30 | completed, failed and cancelled instances go this long after they last changed, with their events, timeline and invocations |
 * | PRAXIS_RETAIN_EVENTS_DAYS | 7 | consumed events (of any instance) go this long after they were consumed; signals sent with a signalId stay as long as their instance |
 * | PRAXIS_RETAIN_RUNNING_TIMELINE_DAYS | off | timeline entries of running and paused instances go this long after they were written |
 * | PRAXIS_RETENTION_SCHEDULE | `*\/10 * * * *` | when the purge runs (cron, UTC); `off`: never, in this worker |
 * | PRAXIS_RETENTION_BATCH | 1000 | instances (with their rows), or events, or timeline entries, deleted per statement and transaction |
 * | PRAXIS_RETENTION_BUDGET_MS | 60000 | one purge stops after this long; the next run goes on where it stopped |
 */
import { z } from 'zod'

const Env = z.object({
  DATABASE_URL: z.string().url().optional(),
  PRAXIS_DATA_DIR: z.string().default('.praxis'),
  PRAXIS_PG_PORT: z.coerce.number().int().min(1).max(65535).default(54329),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  PRAXIS_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  PRAXIS_LEASE_MS: z.coerce.number().int().min(1000).default(15_000),
  PRAXIS_CAPS: z.string().regex(/^\s*([\w-]+(:[\w-]+)?\s*=\s*\d+\s*(,\s*|$))*$/, 'write caps as service=N or service:pool=N, comma-separated').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // Empty is unset (PRAXIS_METRICS_TOKEN= in a compose file); a short token is refused, not weakly accepted.
  PRAXIS_METRICS_TOKEN: z.preprocess((v) => (v === '' ? undefined : v), z.string().min(16, 'at least 16 characters: use a random secret (openssl rand -hex 24)').optional()),
  PRAXIS_RULE_TIMEOUT_MS: z.coerce.number().int().min(10).max(600_000).optional(),
  PRAXIS_RULE_MEMORY_MB: z.coerce.number().int().min(8).max(8192).optional(),
  PRAXIS_BUNDLE_LOAD_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  PRAXIS_SANDBOX_CAPACITY: z.coerce.number().int().min(1).max(100_000).optional(),
  PRAXIS_MAX_CALLS: z.coerce.number().int().min(1).max(1_000_000).optional(),
  PRAXIS_MAX_FACTS_BYTES: z.coerce.number().int().min(1024).max(256 * 1024 * 1024).optional(),
  PRAXIS_MAX_DEPTH: z.coerce.number().int().min(4).max(1000).optional(),
  PRAXIS_MAX_INPUT_BYTES: z.coerce.number().int().min(1024).max(256 * 1024 * 1024).optional(),
  PRAXIS_MAX_PRIORITY: z.coerce.number().int().min(0).max(32_000).optional(),
  PRAXIS_MAX_RETRY_ATTEMPTS: z.coerce.number().int().min(1).max(1000).optional(),
  PRAXIS_MIN_RETRY_DELAY_MS: z.coerce.number().int().min(0).optional(),
  PRAXIS_MAX_RETRY_DELAY_MS: z.coerce.number().int().min(1).optional(),
  PRAXIS_MAX_FUNCTION_TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  // Retention (see the table above).
  PRAXIS_RETAIN_FINISHED_DAYS: z.union([z.literal('off'), z.coerce.number().positive().max(36_500)]).optional(),
  PRAXIS_RETAIN_EVENTS_DAYS: z.union([z.literal('off'), z.coerce.number().positive().max(36_500)]).optional(),
  PRAXIS_RETAIN_RUNNING_TIMELINE_DAYS: z.union([z.literal('off'), z.coerce.number().positive().max(36_500)]).optional(),
  PRAXIS_RETENTION_SCHEDULE: z.union([z.literal('off'), z.string().regex(/^\s*\S+(\s+\S+){4}\s*$/, 'a cron pattern of five fields, e.g. "*/10 * * * *", or off')]).optional(),
  PRAXIS_RETENTION_BATCH: z.coerce.number().int().min(1).max(100_000).optional(),
  PRAXIS_RETENTION_BUDGET_MS: z.coerce.number().int().min(100).optional(),
})

/** Limits on tenant code and on what it asks the platform for (see the table above). */
export interface Limits {
  ruleTimeoutMs: number
  ruleMemoryMb: number
  bundleLoadMs: number
  sandboxCapacity: number
  maxCalls: number
  maxFactsBytes: number
  maxDepth: number
  maxInputBytes: number
  maxPriority: number
  maxRetryAttempts: number
  minRetryDelayMs: number
  maxRetryDelayMs: number
  maxFunctionTimeoutMs: number
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  ruleTimeoutMs: 1000,
  ruleMemoryMb: 64,
  bundleLoadMs: 5000,
  sandboxCapacity: 64,
  maxCalls: 1000,
  maxFactsBytes: 1024 * 1024,
  maxDepth: 64,
  maxInputBytes: 256 * 1024,
  maxPriority: 100,
  maxRetryAttempts: 25,
  minRetryDelayMs: 10,
  maxRetryDelayMs: 24 * 60 * 60 * 1000,
  maxFunctionTimeoutMs: 60 * 60 * 1000,
})

/** The environment variable that sets each limit. */
const LIMIT_VARIABLES = {
  ruleTimeoutMs: 'PRAXIS_RULE_TIMEOUT_MS',
  ruleMemoryMb: 'PRAXIS_RULE_MEMORY_MB',
  bundleLoadMs: 'PRAXIS_BUNDLE_LOAD_MS',
  sandboxCapacity: 'PRAXIS_SANDBOX_CAPACITY',
  maxCalls: 'PRAXIS_MAX_CALLS',
  maxFactsBytes: 'PRAXIS_MAX_FACTS_BYTES',
  maxDepth: 'PRAXIS_MAX_DEPTH',
  maxInputBytes: 'PRAXIS_MAX_INPUT_BYTES',
  maxPriority: 'PRAXIS_MAX_PRIORITY',
  maxRetryAttempts: 'PRAXIS_MAX_RETRY_ATTEMPTS',
  minRetryDelayMs: 'PRAXIS_MIN_RETRY_DELAY_MS',
  maxRetryDelayMs: 'PRAXIS_MAX_RETRY_DELAY_MS',
  maxFunctionTimeoutMs: 'PRAXIS_MAX_FUNCTION_TIMEOUT_MS',
} as const satisfies Record<keyof Limits, keyof z.infer<typeof Env>>

/**
 * How long finished data is kept, in days (fractions allowed); null keeps it for ever. A tenant's
 * own settings (praxis.tenants.retention) override these key by key.
 */
export interface RetentionPolicy {
  /** Completed, failed and cancelled instances, after they last changed, with their events, timeline and invocations. */
  finishedDays: number | null
  /** Consumed events, after they were consumed (signals sent with a signalId stay as long as their instance). */
  eventsDays: number | null
  /** Timeline entries of running and paused instances, after they were written. */
  runningTimelineDays: number | null
}

/** The platform's retention: its default policy, and when and how its workers purge. */
export interface RetentionSettings extends RetentionPolicy {
  /** Cron pattern (UTC) of the purge; null: this worker schedules none and takes no retention job. */
  schedule: string | null
  /** Instances (with their rows), events or timeline entries deleted per statement, each its own transaction. */
  batchSize: number
  /** A purge stops after this long; the next one goes on. */
  budgetMs: number
}

export const DEFAULT_RETENTION: Readonly<RetentionSettings> = Object.freeze({
  finishedDays: 30,
  eventsDays: 7,
  runningTimelineDays: null,
  schedule: '*/10 * * * *',
  batchSize: 1000,
  budgetMs: 60_000,
})

/** `off` is null (kept for ever, or never scheduled); unset is the default. */
const orDefault = <T>(value: T | 'off' | undefined, fallback: T | null): T | null => (value === 'off' ? null : value ?? fallback)

export interface Config {
  databaseUrl: string | undefined
  dataDir: string
  embeddedPort: number
  port: number
  host: string
  workerConcurrency: number
  leaseMs: number
  /** Concurrency caps of a worker process (PRAXIS_CAPS). */
  caps: { pools: Record<string, number>; services: Record<string, number> }
  logLevel: z.infer<typeof Env>['LOG_LEVEL']
  /** The operator's token for GET /metrics; undefined: loopback only (platform/api/metrics.ts). */
  metricsToken: string | undefined
  limits: Limits
  /** Retention of finished data: defaults, schedule, batch and budget (PRAXIS_RETAIN_*, PRAXIS_RETENTION_*). */
  retention: RetentionSettings
}

/** Reads and validates the environment once; throws a message naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')
    throw new Error(`invalid environment:\n${lines}\nfix these variables (see platform/config.ts) and start again`)
  }
  const e = parsed.data
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: e.PRAXIS_DATA_DIR,
    embeddedPort: e.PRAXIS_PG_PORT,
    port: e.PORT,
    host: e.HOST,
    workerConcurrency: e.PRAXIS_WORKER_CONCURRENCY,
    leaseMs: e.PRAXIS_LEASE_MS,
    caps: parseCaps(e.PRAXIS_CAPS ?? ''),
    logLevel: e.LOG_LEVEL,
    metricsToken: e.PRAXIS_METRICS_TOKEN,
    limits: Object.fromEntries(Object.entries(LIMIT_VARIABLES).map(([key, variable]) => [key, e[variable] ?? DEFAULT_LIMITS[key as keyof Limits]])) as unknown as Limits,
    retention: {
      finishedDays: orDefault(e.PRAXIS_RETAIN_FINISHED_DAYS, DEFAULT_RETENTION.finishedDays),
      eventsDays: orDefault(e.PRAXIS_RETAIN_EVENTS_DAYS, DEFAULT_RETENTION.eventsDays),
      runningTimelineDays: orDefault(e.PRAXIS_RETAIN_RUNNING_TIMELINE_DAYS, DEFAULT_RETENTION.runningTimelineDays),
      schedule: orDefault(e.PRAXIS_RETENTION_SCHEDULE?.trim(), DEFAULT_RETENTION.schedule),
      batchSize: e.PRAXIS_RETENTION_BATCH ?? DEFAULT_RETENTION.batchSize,
      budgetMs: e.PRAXIS_RETENTION_BUDGET_MS ?? DEFAULT_RETENTION.budgetMs,
    },
  }
}

/** `service=N, service:pool=N` → caps by service and by qualified pool. */
export function parseCaps(text: string): Config['caps'] {
  const caps: Config['caps'] = { pools: {}, services: {} }
  for (const item of text.split(',').map((t) => t.trim()).filter(Boolean)) {
    const [name, n] = item.split('=').map((t) => t.trim()) as [string, string]
    if (name.includes(':')) caps.pools[name] = Number(n)
    else caps.services[name] = Number(n)
  }
  return caps
}
