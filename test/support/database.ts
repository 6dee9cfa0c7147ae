/** One database per test file, cloned from the migrated template. */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { inject } from 'vitest'
import { createPool, ensureDatabase, quoteIdent } from '../../platform/store/index.js'

export interface TestDatabase { url: string; pool: pg.Pool; drop(): Promise<void> }

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('pgAdminUrl')
  const name = `t_${randomBytes(6).toString('hex')}`
  await ensureDatabase(adminUrl, name, inject('pgTemplate'))
  const parsed = new URL(adminUrl)
  parsed.pathname = `/${name}`
  const url = parsed.toString()
  const pool = createPool(url, 20)
  return {
    url,
    pool,
    async drop() {
      await pool.end()
      const admin = new pg.Client({ connectionString: adminUrl })
      await admin.connect()
      await admin.query(`drop database if exists ${quoteIdent(name)} with (force)`)
      await admin.end()
    },
  }
}
