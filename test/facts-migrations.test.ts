/**
 * Facts migrations (always-on deploys that change the facts' shape): a workflow raises its
 * `factsVersion` and gives `migrate(facts, fromVersion)`; the deploy's background run reaches every
 * running instance with older facts, migrates them before the new rules see them, and an instance
 * migrate cannot handle fails with PRX_MIGRATION_FAILED, keeping its facts, while the others go
 * on. The dry run counts them; a deploy that would lower the version is refused. On main there was
 * no facts version: a changed facts schema met old facts, and the instance failed in its first rule.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { z } from 'zod'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codegen } from '../codegen/index.js'
import { printPreview } from '../platform/cli/deploys.js'
import { buildBundle } from '../platform/engine/index.js'
import { defineWorkflow } from '../sdk/index.js'
import { runReached } from './support/wait.js'
import { startTestPlatform, TENANT, type TestPlatform } from './support/platform.js'

const FIXTURE = path.resolve('test/fixtures/migrations')
const SERVICE = 'migrations'

/** Version 2: `name` becomes `first` and `last`; a new rule tags Ada and calls `welcome`. */
const V2 = `
import { z } from 'zod'
import { defineWorkflow } from '../../../sdk/index.js'
import { welcome } from './generated/functions.js'

export const profile = defineWorkflow({
  name: 'profile',
  factsVersion: 2,
  migrate: (facts, from) => {
    if (from !== 1) throw new Error('unknown facts version ' + from)
    const [first, last] = String(facts.name).split(' ')
    if (!last) throw new Error('name ' + JSON.stringify(facts.name) + ' has no last name')
    return { first: first!, last, greeted: facts.greeted === true }
  },
  input: z.object({ first: z.string(), last: z.string() }),
  facts: z.object({ first: z.string(), last: z.string(), greeted: z.boolean().default(false), tagged: z.boolean().default(false), welcome: z.string().optional() }),
  init: (input) => input,
  rules: (rule) => [
    rule('done').match((f) => f.greeted.eq(true)).action((_facts, ctx) => ctx.complete()),
    rule('tag').match((f) => f.first.eq('Ada'))
      .action((facts, ctx) => {
        ctx.set({ tagged: true })
        return ctx.call(welcome, { first: facts.first })
      })
      .reaction((_facts, out, ctx) => ctx.set({ welcome: out.text })),
  ],
})
`

let p: TestPlatform
let tmp: string
let dir: string
beforeAll(async () => {
  p = await startTestPlatform()
  tmp = await mkdtemp(path.resolve('test', '.tmp-migrations-'))
  dir = path.join(tmp, SERVICE)
  await cp(FIXTURE, dir, { recursive: true })
})
afterAll(async () => {
  await p?.close()
  await rm(tmp, { recursive: true, force: true })
})

const instance = async (id: string) => (await p.request('GET', `/v1/instances/${id}`)).body
const timeline = async (id: string): Promise<{ kind: string; data: any }[]> => (await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`)).body.entries
async function body(): Promise<{ code: string; manifest: unknown }> {
  await codegen({ dir })
  const { code } = await buildBundle(dir)
  return { code, manifest: JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8')) }
}
async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const value = await read()
    if (ok(value)) return value
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('facts migrations', () => {
  it('migrate every running instance with older facts in the background, fail only the one migrate cannot handle, and refuse a deploy that lowers the version', async () => {
    await codegen({ dir })
    expect((await p.deploy(dir)).status).toBe(201)
    await p.startWorker(dir)
    const names = ['Ada Lovelace', 'Grace Hopper', 'Plato']
    const ids: string[] = []
    for (const name of names) {
      const r = await p.request('POST', '/v1/workflows/profile/instances', { input: { name } })
      expect(r.status).toBe(201)
      ids.push(r.body.id)
    }
    const [ada, grace, plato] = ids as [string, string, string]
    expect((await instance(ada)).factsVersion).toBe(1)

    await writeFile(path.join(dir, 'workflows.ts'), V2)
    const v2 = await body()
    const preview = await p.request('POST', `/v1/services/${SERVICE}/deployments?dryRun=true`, v2)
    expect(preview.status).toBe(200)
    expect(preview.body.migrations).toEqual([{ workflow: 'profile', to: 2, running: 3, finished: 0 }])
    // The new rule's reach cannot be counted over facts of version 1 (they have no `first`).
    expect(preview.body.changes).toEqual([{ workflow: 'profile', added: ['tag'], changed: [], removed: [] }])
    // `praxis deploy --dry-run` prints it.
    const printed: string[] = []
    printPreview(preview.body, (line) => printed.push(line))
    expect(printed).toContain('  profile: facts migrated to version 2 on 3 running instances; an instance migrate fails on fails, the others go on')
    expect(printed).toContain('  (rule counts are over the facts as they are now, before migration)')

    const deployed = await p.request('POST', `/v1/services/${SERVICE}/deployments`, v2)
    expect(deployed.status).toBe(201)
    expect(deployed.body.reevaluating).toBe(3)
    const run = await runReached(p, SERVICE, deployed.body.reprocessing.id)
    expect(run).toMatchObject({ status: 'done', total: 3, walked: 3, queued: 3, evaluated: 3, failed: 1 })

    // Ada: migrated, then the new rule saw the new facts and its call's reaction ran.
    const adaNow = await until('Ada welcomed', () => instance(ada), (i) => i.facts.welcome !== undefined)
    expect(adaNow).toMatchObject({ status: 'running', factsVersion: 2, facts: { first: 'Ada', last: 'Lovelace', greeted: false, tagged: true, welcome: 'welcome, Ada' } })
    expect((await timeline(ada)).filter((e) => e.kind === 'facts.migrated').map((e) => e.data)).toEqual([{ from: 1, to: 2 }])
    // Grace: migrated; the new rule does not match her.
    expect(await instance(grace)).toMatchObject({ status: 'running', factsVersion: 2, facts: { first: 'Grace', last: 'Hopper', greeted: false, tagged: false } })
    // Plato: migrate threw; the instance failed with a clear error and kept its facts of version 1.
    const platoNow = await instance(plato)
    expect(platoNow).toMatchObject({ status: 'failed', factsVersion: 1, facts: { name: 'Plato', greeted: false } })
    expect(platoNow.error.details).toMatchObject({ code: 'PRX_MIGRATION_FAILED', fromVersion: 1, toVersion: 2 })
    expect(platoNow.error.message).toContain('migrate(facts, 1) of workflow profile threw: name "Plato" has no last name')
    expect(platoNow.error.message).toContain('keeps its facts of version 1')
    expect((await timeline(plato)).map((e) => e.kind)).toContain('facts.migration.failed')

    // Two migrations in all: Ada's and Grace's.
    const { rows } = await p.db.pool.query<{ n: number }>('select count(*)::int as n from praxis.timeline where tenant_id = $1 and kind = $2', [TENANT, 'facts.migrated'])
    expect(rows[0]!.n).toBe(2)
    // A new instance starts at version 2.
    const fresh = await p.request('POST', '/v1/workflows/profile/instances', { input: { first: 'Alan', last: 'Turing' } })
    expect((await instance(fresh.body.id)).factsVersion).toBe(2)

    // Rolling back to v1 would lower the facts version under instances already migrated: refused,
    // and the preview says so too; v2 stays active.
    for (const dryRun of [true, false]) {
      const rolled = await p.request('POST', `/v1/services/${SERVICE}/rollback${dryRun ? '?dryRun=true' : ''}`, {})
      expect(rolled.status).toBe(409)
      expect(rolled.body.error.code).toBe('PRX_FACTS_VERSION_LOWERED')
      expect(rolled.body.error.message).toContain('facts version 1, lower than the active version\'s 2')
    }
    const versions = (await p.request('GET', `/v1/services/${SERVICE}/deployments`)).body.deployments
    expect(versions.find((d: { active: boolean }) => d.active).version).toBe(2)
  })

  it('refuse a workflow that raises factsVersion without a migrate', () => {
    const define = () => defineWorkflow({
      name: 'noMigrate',
      factsVersion: 2,
      input: z.object({}),
      facts: z.object({ a: z.number().default(0) }),
      init: () => ({}),
      rules: () => [],
    })
    expect(define).toThrow(/factsVersion 2 but no migrate\(facts, fromVersion\)/)
  })
})
