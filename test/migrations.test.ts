/**
 * Migrations are immutable once released (issue: 000001 and 000002 were edited after they landed,
 * and a database made by an earlier release lacked what the edits added). Each applied migration
 * is recorded with its checksum; a changed one is refused; 000003 brings a database made by any
 * released version of 000001/000002 to the same schema as a new one; and the schema of a new
 * database is committed (platform/store/schema.txt) and compared here, so CI sees any change.
 * `UPDATE_SCHEMA=1 npx vitest run test/migrations.test.ts` rewrites the file after an intended change.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { createPool, ensureDatabase, migrate, quoteIdent } from '../platform/store/index.js'

const SCHEMA_FILE = 'platform/store/schema.txt'
const SQL = 'platform/store/sql/'
const made: string[] = []

/** An empty database (no template) and a pool on it. */
async function emptyDatabase(): Promise<pg.Pool> {
  const name = `m_${randomBytes(6).toString('hex')}`
  await ensureDatabase(inject('pgAdminUrl'), name)
  made.push(name)
  const url = new URL(inject('pgAdminUrl'))
  url.pathname = `/${name}`
  return createPool(url.toString(), 2)
}

afterAll(async () => {
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') })
  await admin.connect()
  for (const name of made) await admin.query(`drop database if exists ${quoteIdent(name)} with (force)`)
  await admin.end()
})

/** The praxis schema as text: tables and columns, constraints, indexes, functions, storage options. */
async function schemaOf(pool: pg.Pool): Promise<string> {
  const parts: string[] = []
  const rows = async (sql: string): Promise<string[]> => (await pool.query<{ line: string }>(sql)).rows.map((r) => r.line)
  parts.push(...await rows(`select 'column ' || table_name || '.' || column_name || ' ' || data_type || case when is_nullable = 'NO' then ' not null' else '' end || coalesce(' default ' || column_default, '') as line
    from information_schema.columns where table_schema = 'praxis' order by table_name, column_name`))
  parts.push(...await rows(`select 'constraint ' || conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) as line
    from pg_constraint where connamespace = 'praxis'::regnamespace order by 1`))
  parts.push(...await rows(`select 'index ' || indexdef as line from pg_indexes where schemaname = 'praxis' order by 1`))
  parts.push(...await rows(`select 'function ' || regexp_replace(pg_get_functiondef(p.oid), '\\s+', ' ', 'g') as line
    from pg_proc p where pronamespace = 'praxis'::regnamespace order by 1`))
  parts.push(...await rows(`select 'options ' || relname || ' ' || array_to_string(reloptions, ',') as line
    from pg_class where relnamespace = 'praxis'::regnamespace and reloptions is not null order by 1`))
  return `${parts.join('\n')}\n`
}

/** A database as an earlier release left it: 000001 and 000002 applied, recorded without checksums. */
async function releasedDatabase(extra: string): Promise<pg.Pool> {
  const pool = await emptyDatabase()
  await pool.query('create schema praxis')
  await pool.query('create table praxis.migrations (version int primary key, name text not null, applied_at timestamptz not null default now())')
  for (const [version, file] of [[1, '000001_core.sql'], [2, '000002_children_and_manifests.sql']] as const) {
    await pool.query(await readFile(SQL + file, 'utf8'))
    await pool.query('insert into praxis.migrations (version, name) values ($1, $2)', [version, file])
  }
  if (extra) await pool.query(extra)
  return pool
}

describe('migrations', () => {
  let fresh: string

  it('gives a new database the committed schema', async () => {
    const pool = await emptyDatabase()
    await migrate(pool)
    fresh = await schemaOf(pool)
    await pool.end()
    if (process.env.UPDATE_SCHEMA) await writeFile(SCHEMA_FILE, fresh)
    expect(fresh, `${SCHEMA_FILE} is stale: if the change is intended, run UPDATE_SCHEMA=1 npx vitest run test/migrations.test.ts`).toBe(await readFile(SCHEMA_FILE, 'utf8'))
  })

  it('brings a database made by the first release of 000001/000002 to the same schema (it lacked praxis.jobs_missing())', async () => {
    const pool = await releasedDatabase('')
    expect((await pool.query("select to_regproc('praxis.jobs_missing') as f")).rows[0].f).toBeNull()
    await migrate(pool)
    expect(await schemaOf(pool)).toBe(fresh)
    await pool.end()
  })

  it('brings a database made by the last release of 000001/000002 (with the additions in them) to the same schema', async () => {
    const pool = await releasedDatabase(await readFile(`${SQL}000003_released_additions.sql`, 'utf8'))
    await migrate(pool)
    expect(await schemaOf(pool)).toBe(fresh)
    await pool.end()
  })

  it('records a checksum for each migration and refuses one changed after it was applied', async () => {
    const pool = await emptyDatabase()
    await migrate(pool)
    const { rows } = await pool.query<{ checksum: string | null }>('select checksum from praxis.migrations order by version')
    expect(rows.length).toBeGreaterThanOrEqual(5)
    expect(rows.every((r) => /^[0-9a-f]{64}$/.test(r.checksum ?? ''))).toBe(true)
    await pool.query("update praxis.migrations set checksum = repeat('0', 64) where version = 1")
    await expect(migrate(pool)).rejects.toThrow(/000001_core\.sql was changed after it was applied.*put the change in a new migration/)
    await pool.query("update praxis.migrations set checksum = null, name = '000001_renamed.sql' where version = 1")
    await expect(migrate(pool)).rejects.toThrow(/migration 1 of this database is 000001_renamed\.sql/)
    await pool.end()
  })
})
