/** Applies platform/store/sql/NNNNNN_*.sql in order, once each, under an advisory lock. */
import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'
import { Logger, runMigrations } from 'graphile-worker'

const SQL_DIR = fileURLToPath(new URL('./sql/', import.meta.url))
const LOCK = 7_211_001

/** Migrates the praxis schema, then graphile-worker's own. Safe to run from many processes at once. */
export async function migrate(pool: pg.Pool): Promise<{ applied: string[] }> {
  const files = (await readdir(SQL_DIR)).filter((f) => /^\d{6}_[\w-]+\.sql$/.test(f)).sort()
  const applied: string[] = []
  const client = await pool.connect()
  try {
    await client.query('select pg_advisory_lock($1)', [LOCK])
    await client.query('create schema if not exists praxis')
    await client.query('create table if not exists praxis.migrations (version int primary key, name text not null, applied_at timestamptz not null default now())')
    const done = new Set((await client.query<{ version: number }>('select version from praxis.migrations')).rows.map((r) => r.version))
    for (const file of files) {
      const version = Number(file.slice(0, 6))
      if (done.has(version)) continue
      const sql = await readFile(SQL_DIR + file, 'utf8')
      await client.query('begin')
      try {
        await client.query(sql)
        await client.query('insert into praxis.migrations (version, name) values ($1, $2)', [version, file])
        await client.query('commit')
      } catch (error) {
        await client.query('rollback')
        throw new Error(`migration ${file} failed: ${(error as Error).message}`, { cause: error })
      }
      applied.push(file)
    }
  } finally {
    await client.query('select pg_advisory_unlock($1)', [LOCK]).catch(() => undefined)
    client.release()
  }
  await runMigrations({ pgPool: pool, logger: quietLogger })
  return { applied }
}

/** graphile-worker logs migrations at info; keep start-up output to what Praxis says itself. */
export const quietLogger = new Logger(() => () => undefined)
