/**
 * The database of the CLI's commands that work on PostgreSQL directly (`praxis worker`, `pools`,
 * `tenants`, `keys`): DATABASE_URL, else the embedded PostgreSQL of a running `praxis dev`. A
 * connection that fails says which database it tried (never its password) and what to check.
 */
import type pg from 'pg'
import type { Config } from '../config.js'
import { PraxisError } from '../errors.js'
import { createPool } from '../store/index.js'

/** DATABASE_URL, or the embedded PostgreSQL `praxis dev` runs (its TCP port; the URL its workers get). */
export const cliDatabaseUrl = (config: Config): string => config.databaseUrl ?? `postgres://postgres:praxis@127.0.0.1:${config.embeddedPort}/praxis`

/** The database as a message may show it: host, port and name, without user or password. */
function shown(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`
  } catch {
    return 'DATABASE_URL (not a URL)'
  }
}

/** What to check when `error` (from pg) kept `command` from reaching the database of `config`. */
export function unreachable(config: Config, command: string, error: unknown): PraxisError {
  const e = error as { code?: string; message?: string }
  const url = cliDatabaseUrl(config)
  const where = config.databaseUrl ? `the PostgreSQL of DATABASE_URL (${shown(url)})` : `the embedded PostgreSQL of \`praxis dev\` (${shown(url)})`
  let fix: string
  if (e.code === '28P01' || e.code === '28000') fix = 'the user or password is refused: check the credentials in DATABASE_URL'
  else if (e.code === '3D000') fix = `the database does not exist: create it, or point DATABASE_URL at the one the rule server uses`
  else if (config.databaseUrl) fix = 'check DATABASE_URL (host, port, database), that the server runs, and that this machine may connect to it'
  else fix = `start \`praxis dev\` (or \`npm start\`) first and run this again; if praxis dev runs with another PRAXIS_PG_PORT (this command tried ${config.embeddedPort}), set the same here; or set DATABASE_URL to the PostgreSQL the rule server uses`
  return new PraxisError('PRX_DATABASE_UNAVAILABLE', `${command} cannot reach ${where}: ${e.message ?? String(error)}. ${fix[0]!.toUpperCase()}${fix.slice(1)}`, { cause: error })
}

/** A pool on the CLI's database, checked with one query; throws `unreachable`'s error when it does not answer. */
export async function openCliDatabase(config: Config, command: string, size: number): Promise<pg.Pool> {
  const pool = createPool(cliDatabaseUrl(config), size)
  try {
    await pool.query('select 1')
    return pool
  } catch (error) {
    await pool.end().catch(() => undefined)
    throw unreachable(config, command, error)
  }
}
