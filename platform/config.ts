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
 * | LOG_LEVEL | info | pino level |
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
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

export interface Config {
  databaseUrl: string | undefined
  dataDir: string
  embeddedPort: number
  port: number
  host: string
  workerConcurrency: number
  leaseMs: number
  logLevel: z.infer<typeof Env>['LOG_LEVEL']
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
    logLevel: e.LOG_LEVEL,
  }
}
