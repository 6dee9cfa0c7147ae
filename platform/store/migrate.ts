/**
 * Applies platform/store/sql/NNNNNN_*.sql in order, once each, under an advisory lock. A released
 * migration is never edited: each applied one is recorded with its checksum, and a file that no
 * longer matches is refused (put the change in a new migration instead).
 */
import { createHash } from 'node:crypto'
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
    await client.query('alter table praxis.migrations add column if not exists checksum text')
    const done = new Map((await client.query<{ version: number; name: string; checksum: string | null }>('select version, name, checksum from praxis.migrations')).rows.map((r) => [r.version, r]))
    for (const file of files) {
      const version = Number(file.slice(0, 6))
      const sql = await readFile(SQL_DIR + file, 'utf8')
      const checksum = createHash('sha256').update(sql).digest('hex')
      const recorded = done.get(version)
      if (recorded) {
        if (recorded.name !== file) throw new Error(`migration ${version} of this database is ${recorded.name}, but the file is now ${file}: released migrations are never renamed or renumbered`)
        // Applied before checksums were recorded: 000003 brought any such database up to date, so
        // the file as it is now is what it has.
        if (recorded.checksum === null) await client.query('update praxis.migrations set checksum = $2 where version = $1', [version, checksum])
        else if (recorded.checksum !== checksum) {
          throw new Error(`migration ${file} was changed after it was applied to this database (recorded as ${recorded.name}, checksum ${recorded.checksum.slice(0, 12)}…, now ${checksum.slice(0, 12)}…): released migrations are never edited. Restore the file and put the change in a new migration`)
        }
        continue
      }
      await client.query('begin')
      try {
        await client.query(sql)
        await client.query('insert into praxis.migrations (version, name, checksum) values ($1, $2, $3)', [version, file, checksum])
        await client.query('commit')
      } catch (error) {
        await client.query('rollback').catch(() => undefined)
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
