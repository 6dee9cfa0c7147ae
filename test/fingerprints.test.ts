/**
 * Rule fingerprints computed from the source (codegen/fingerprint.ts), shipped in the manifest and
 * used by the rule server (platform/engine/deploy.ts). Each test edits a copy of
 * test/fixtures/fingerprints-base under test/.tmp-fingerprints-<random>/ (the same folder name, so
 * the same service) and runs codegen on it: a fingerprint changes exactly when the code that
 * defines its rule does, never because of the bundler, an unrelated module, comments or formatting.
 * End to end, a deployed changed rule fires once on running instances and unchanged ones stay quiet.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codegen } from '../codegen/index.js'
import { BundleCache, buildBundle, readGeneratedManifest } from '../platform/engine/index.js'
import { ensureTenant } from '../platform/store/index.js'
import type { ServiceManifest } from '../sdk/index.js'
import { runReached } from './support/wait.js'
import { startTestPlatform, type TestPlatform } from './support/platform.js'

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)))
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'fingerprints-base')
const EXTRA = path.join(ROOT, 'test', 'fixtures', 'fingerprints-extra', 'extra.ts')
const SERVICE = 'fingerprints-base'
const S1 = /^s1:[0-9a-f]{32}$/

const temps: string[] = []
afterAll(async () => {
  for (const dir of temps) await rm(dir, { recursive: true, force: true })
})

/** A fresh copy of the fixture service (at the fixture's depth, so its relative imports resolve). */
async function copy(): Promise<string> {
  const tmp = await mkdtemp(path.join(ROOT, 'test', '.tmp-fingerprints-'))
  temps.push(tmp)
  const dir = path.join(tmp, SERVICE)
  await cp(FIXTURE, dir, { recursive: true })
  return dir
}

/** Replaces `from` (which must be there) in a file of the service. */
async function edit(dir: string, file: string, from: string, to: string): Promise<void> {
  const text = await readFile(path.join(dir, file), 'utf8')
  expect(text, `${file} holds ${from}`).toContain(from)
  await writeFile(path.join(dir, file), text.replace(from, to))
}

/** The unrelated module: a workflow whose own helper is also named `bump`, exported before anything else. */
async function addExtraModule(dir: string): Promise<void> {
  await cp(EXTRA, path.join(dir, 'extra.ts'))
  await edit(dir, 'workflows.ts', "import { z } from 'zod'", "export { extra } from './extra.js'\nimport { z } from 'zod'")
}

/** Runs codegen and returns the manifest's fingerprints by `workflow.rule`. */
async function fingerprints(dir: string): Promise<Record<string, string>> {
  await codegen({ dir })
  const manifest = JSON.parse(await readFile(path.join(dir, 'generated', 'manifest.json'), 'utf8')) as ServiceManifest
  const out = Object.fromEntries(manifest.workflows.flatMap((w) => w.rules.map((r) => [`${w.name}.${r.name}`, r.fingerprint])))
  for (const fingerprint of Object.values(out)) expect(fingerprint).toMatch(S1)
  return out
}

/** Which of `before`'s rules have another fingerprint in `after`. */
const changed = (before: Record<string, string>, after: Record<string, string>): string[] =>
  Object.keys(before).filter((rule) => after[rule] !== before[rule]).sort()

describe('fingerprints from the source', () => {
  /** The unedited fixture's fingerprints (computed once, in the first test that asks). */
  let baseline: Promise<Record<string, string>> | undefined
  const unedited = async (): Promise<Record<string, string>> => (baseline ??= copy().then(fingerprints))

  it('gives each rule a fingerprint of the source scheme, the same on every run', async () => {
    const base = await unedited()
    expect(Object.keys(base).sort()).toEqual(['tally.announce', 'tally.audit', 'tally.bump'])
    expect(new Set(Object.values(base)).size).toBe(3)
    expect(await fingerprints(await copy())).toEqual(base)
  })

  it('keeps every fingerprint when an unrelated module exports a same-named symbol (the bundler renames the stub)', async () => {
    const base = await unedited()
    const dir = await copy()
    await addExtraModule(dir)
    const after = await fingerprints(dir)
    // The case itself: esbuild now calls the stub bump2 inside the action of rule bump.
    const { code } = await buildBundle(dir)
    expect(code).toMatch(/ctx\.call\(bump2,/)
    expect(changed(base, after)).toEqual([])
    expect(after['extra.grow']).toMatch(S1)
  })

  it('changes exactly the rules whose sections reach an edited module-local helper', async () => {
    const base = await unedited()
    // prefix() is reached by announce through label(), in another file.
    const prefix = await copy()
    await edit(prefix, 'helpers.ts', "return 'bumps so far:'", "return 'bumps:'")
    expect(changed(base, await fingerprints(prefix))).toEqual(['tally.announce'])

    // STEP is reached by bump through nextBy(), declared next to the workflow.
    const step = await copy()
    await edit(step, 'helpers.ts', 'export const STEP = 1', 'export const STEP = 2')
    expect(changed(base, await fingerprints(step))).toEqual(['tally.bump'])

    const nextBy = await copy()
    await edit(nextBy, 'workflows.ts', 'return bumps + STEP', 'return STEP + bumps')
    expect(changed(base, await fingerprints(nextBy))).toEqual(['tally.bump'])
  })

  it('ignores comments, formatting, types and import aliases', async () => {
    const base = await unedited()
    const dir = await copy()
    // A comment the bundler keeps in its output (an annotation), inside an action.
    await edit(dir, 'workflows.ts', '{ by: nextBy(facts.bumps) }', '{ by: /* @__PURE__ */ nextBy(facts.bumps) }')
    await edit(dir, 'workflows.ts', ".action((facts, ctx) => ctx.set({ audits: facts.audits + 1 })),",
      '// counts its own firings\n      .action(\n        (facts, ctx) =>\n          ctx.set({\n            audits: (facts.audits + 1) as number, // one more\n          },),\n      ),')
    await edit(dir, 'workflows.ts', 'function nextBy(bumps: number): number {', '/** The next call\'s argument. */\nexport function nextBy (bumps: number) {')
    await edit(dir, 'workflows.ts', "import { bump, notify } from './generated/functions.js'", "import { bump as bumpStub, notify } from './generated/functions.js'")
    await edit(dir, 'workflows.ts', 'ctx.call(bump, ', 'ctx.call(bumpStub, ')
    await edit(dir, 'helpers.ts', "return 'bumps so far:'", 'return "bumps so far:";')
    await edit(dir, 'helpers.ts', 'export function label(count: number): string {\n  return `${prefix()} ${count}`\n}',
      'export function label (count: number)\n{\n    /* the text announce sends */\n    return (`${prefix()} ${count}`);\n}')
    expect(changed(base, await fingerprints(dir))).toEqual([])
  })

  it('changes only the rule whose match, priority or section changed', async () => {
    const base = await unedited()
    const match = await copy()
    await edit(match, 'workflows.ts', 'f.audits.gte(0)', 'f.audits.gte(-1)')
    expect(changed(base, await fingerprints(match))).toEqual(['tally.audit'])

    const priority = await copy()
    await edit(priority, 'workflows.ts', '.priority(5)', '.priority(6)')
    expect(changed(base, await fingerprints(priority))).toEqual(['tally.announce'])

    const reaction = await copy()
    await edit(reaction, 'workflows.ts', 'ctx.set({ notes: facts.notes + 1 })', 'ctx.set({ notes: facts.notes + 2 })')
    expect(changed(base, await fingerprints(reaction))).toEqual(['tally.announce'])

    const stub = await copy()
    await edit(stub, 'workflows.ts', 'ctx.call(bump, ', 'ctx.call(notify, ')
    await edit(stub, 'workflows.ts', '{ by: nextBy(facts.bumps) }', '{ text: String(nextBy(facts.bumps)) }')
    await edit(stub, 'workflows.ts', 'last: out.value', 'last: 0')
    expect(changed(base, await fingerprints(stub))).toEqual(['tally.bump'])
  })

  it('refuses a rule whose source it cannot find, naming the place', async () => {
    const dir = await copy()
    await edit(dir, 'workflows.ts', "rules: (rule) => [\n    rule('bump')", "rules: (rule) => [\n    rule(['b', 'ump'].join(''))")
    await expect(codegen({ dir })).rejects.toMatchObject({ code: 'PRX_CODEGEN_NOT_STATIC', message: expect.stringMatching(/rule bump of workflow tally is not in its source.*workflows\.ts:\d+/s) })
  })
})

describe('deploys use the manifest\'s fingerprints', () => {
  let p: TestPlatform
  beforeAll(async () => {
    p = await startTestPlatform()
  })
  afterAll(async () => p?.close())

  type Entry = { kind: string; rule: string | null; data: Record<string, unknown> }

  const count = async (sql: string, values: unknown[]): Promise<number> =>
    (await p.db.pool.query<{ n: number }>(`select count(*)::int as n from (${sql}) q`, values)).rows[0]!.n

  /** Waits until nothing is left to do for the instance (no event to evaluate, no call to run), then returns its view. */
  async function settled(id: string, tenant: string, key?: string): Promise<{ facts: Record<string, unknown>; timeline: Entry[] }> {
    const deadline = Date.now() + 30_000
    for (;;) {
      const busy = await count('select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and consumed_at is null', [tenant, id])
        + await count("select 1 from praxis.invocations where tenant_id = $1 and instance_id = $2 and status = 'pending'", [tenant, id])
      if (busy === 0) {
        const view = await p.request('GET', `/v1/instances/${id}`, undefined, key)
        const timeline = await p.request('GET', `/v1/instances/${id}/timeline?limit=1000`, undefined, key)
        expect(view.body.status).toBe('running')
        return { facts: view.body.facts, timeline: timeline.body.entries }
      }
      if (Date.now() > deadline) throw new Error(`instance ${id} did not settle`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }


  /** The rules that fired after the last deploy reached the instance. */
  const firedSinceDeploy = (timeline: Entry[]): string[] => {
    const at = timeline.map((e) => e.kind).lastIndexOf('bundle.deployed')
    expect(at).toBeGreaterThan(-1)
    return timeline.slice(at + 1).filter((e) => e.kind === 'rule.fired').map((e) => e.rule!)
  }

  const deployed = (body: { workflows: { name: string; rules: { name: string; fingerprint: string }[] }[] }): Record<string, string> =>
    Object.fromEntries(body.workflows.flatMap((w) => w.rules.map((r) => [`${w.name}.${r.name}`, r.fingerprint])))

  async function start(key?: string): Promise<string> {
    const started = await p.request('POST', '/v1/workflows/tally/instances', { input: {} }, key)
    expect(started.status).toBe(201)
    return started.body.id as string
  }

  it('fires a changed rule once on running instances, and leaves unchanged rules quiet', async () => {
    const dir = await copy()
    const v1 = await fingerprints(dir)
    const first = await p.deploy(dir)
    expect(first.status).toBe(201)
    expect(deployed(first.body)).toEqual(v1)
    await p.startWorker(dir)
    const ids = [await start(), await start()]
    for (const id of ids) {
      const { facts, timeline } = await settled(id, 'acme')
      expect(facts).toMatchObject({ bumps: 1, notes: 1, audits: 1 })
      expect(timeline.filter((e) => e.kind === 'rule.fired').map((e) => e.rule).sort()).toEqual(['announce', 'audit', 'bump'])
    }

    // v2: audit's action changes, and an unrelated module makes the bundler rename the stub bump.
    await edit(dir, 'workflows.ts', 'ctx.set({ audits: facts.audits + 1 })', 'ctx.set({ audits: facts.audits + 10 })')
    await addExtraModule(dir)
    const v2 = await fingerprints(dir)
    expect(changed(v1, v2)).toEqual(['tally.audit'])
    const second = await p.deploy(dir)
    expect(second.status).toBe(201)
    expect(second.body).toMatchObject({ version: 2, created: true, reevaluating: 2 })
    expect(deployed(second.body)).toEqual(v2)
    expect(await runReached(p, second.body.service, second.body.reprocessing.id)).toMatchObject({ queued: 2, fired: 2 })
    for (const id of ids) {
      const { facts, timeline } = await settled(id, 'acme')
      expect(firedSinceDeploy(timeline)).toEqual(['audit'])
      expect(facts).toMatchObject({ bumps: 1, notes: 1, audits: 11 })
    }

    // v3: other bundled code (a comment esbuild keeps), the same fingerprints: nothing fires.
    await edit(dir, 'workflows.ts', '{ by: nextBy(facts.bumps) }', '{ by: /* @__PURE__ */ nextBy(facts.bumps) }')
    expect(await fingerprints(dir)).toEqual(v2)
    const before = await Promise.all(ids.map(async (id) => (await settled(id, 'acme')).timeline.length))
    const third = await p.deploy(dir)
    // No rule added or changed: no old work to reach, so no instance is even evaluated.
    expect(third.body).toMatchObject({ version: 3, created: true, reevaluating: 0 })
    expect(await runReached(p, third.body.service, third.body.reprocessing.id)).toMatchObject({ queued: 0, fired: 0 })
    for (const [n, id] of ids.entries()) {
      const { facts, timeline } = await settled(id, 'acme')
      expect(timeline.length).toBe(before[n])
      expect(facts).toMatchObject({ bumps: 1, notes: 1, audits: 11 })
    }
  })

  it('refuses a manifest that does not match its bundle, and a deploy without one onto fingerprints from the source', async () => {
    const { apiKey } = await ensureTenant(p.db.pool, 'strict')
    const dir = await copy()
    await fingerprints(dir)
    const { code } = await buildBundle(dir)
    const manifest = (await readGeneratedManifest(dir))!
    const post = (body: object) => p.request('POST', `/v1/services/${SERVICE}/deployments`, body, apiKey)
    expect((await post({ code, manifest })).status).toBe(201)

    const variants: [string, (m: ServiceManifest) => void, RegExp][] = [
      ['priority', (m) => { m.workflows[0]!.rules[1]!.priority = 7 }, /the rules of tally differ: rule announce has priority 5 in the bundle, 7 in the manifest/],
      ['match', (m) => { m.workflows[0]!.rules[2]!.condition = { fact: 'facts', path: 'audits', operator: 'greaterThanInclusive', value: 1 } }, /rule audit has another match in the manifest/],
      ['names', (m) => { m.workflows[0]!.rules.reverse() }, /the rules of tally differ: the bundle has bump, announce, audit, the manifest lists audit, announce, bump/],
      ['scheme', (m) => { m.workflows[0]!.rules[0]!.fingerprint = 'ffffffffffffffffffffffff' }, /rule bump has the fingerprint "f{24}" in the manifest, which is not one computed from its source in the scheme this server knows \(s1:…\)/],
    ]
    for (const [what, change, why] of variants) {
      const stale = structuredClone(manifest)
      change(stale)
      const refused = await post({ code: `${code}\n// ${what}`, manifest: stale })
      expect(refused.status, what).toBe(400)
      expect(refused.body.error.code).toBe('PRX_BUNDLE_INVALID')
      expect(refused.body.error.message).toMatch(why)
      expect(refused.body.error.message).toMatch(/run `praxis codegen <service-dir>`, then deploy again/)
    }

    const bare = await post({ code: `${code}\n// without its manifest` })
    expect(bare.status).toBe(400)
    expect(bare.body.error.code).toBe('PRX_BUNDLE_INVALID')
    expect(bare.body.error.message).toMatch(/sends no manifest.*fire again on every running instance.*`praxis deploy <service-dir>`/s)
    // The same code again without it changes nothing, and keeps the fingerprints.
    const same = await post({ code })
    expect(same.status).toBe(200)
    expect(same.body).toMatchObject({ version: 1, created: false })
    expect(Object.values(deployed(same.body)).every((f) => S1.test(f))).toBe(true)
    const versions = await p.request('GET', `/v1/services/${SERVICE}/deployments`, undefined, apiKey)
    expect(versions.body.deployments.map((d: { version: number }) => d.version)).toEqual([1])
  })

  it('keeps unchanged rules quiet on the first deploy with fingerprints from the source after bundle-derived ones', async () => {
    const { apiKey } = await ensureTenant(p.db.pool, 'older')
    const dir = await copy()
    await fingerprints(dir)
    const { code } = await buildBundle(dir)
    const manifest = (await readGeneratedManifest(dir))!
    const post = (body: object) => p.request('POST', `/v1/services/${SERVICE}/deployments`, body, apiKey)
    expect((await post({ code, manifest })).status).toBe(201)
    // Stored as a server before fingerprints from the source stored it: each rule's derived from its bundled code.
    const bundles = new BundleCache()
    const described = (await bundles.load('older', SERVICE, code).finally(() => bundles.close())).manifest
    expect(described.workflows[0]!.rules.every((r) => /^[0-9a-f]{24}$/.test(r.fingerprint))).toBe(true)
    await p.db.pool.query('update praxis.bundles set manifest = $3 where tenant_id = $1 and service = $2', ['older', SERVICE, JSON.stringify(described)])
    await p.startWorker(dir, { tenantId: 'older' })
    const id = await start(apiKey)
    const before = await settled(id, 'older', apiKey)
    expect(before.facts).toMatchObject({ bumps: 1, notes: 1, audits: 1 })
    expect(before.timeline.find((e) => e.kind === 'rule.fired')?.data.fingerprint).toMatch(/^[0-9a-f]{24}$/)

    // The same code with its manifest: new fingerprints, the same rules. Nothing fires.
    const upgraded = await post({ code, manifest })
    expect(upgraded.body).toMatchObject({ version: 2, created: true, reevaluating: 0 })
    expect(deployed(upgraded.body)).toEqual(Object.fromEntries(manifest.workflows.flatMap((w) => w.rules.map((r) => [`${w.name}.${r.name}`, r.fingerprint]))))
    expect(await runReached(p, upgraded.body.service, upgraded.body.reprocessing.id, apiKey)).toMatchObject({ queued: 0 })
    const after = await settled(id, 'older', apiKey)
    expect(after.timeline.length).toBe(before.timeline.length)
    expect(after.facts).toMatchObject({ bumps: 1, notes: 1, audits: 1 })

    // Then a changed rule fires, once.
    await edit(dir, 'workflows.ts', 'ctx.set({ audits: facts.audits + 1 })', 'ctx.set({ audits: facts.audits + 10 })')
    await fingerprints(dir)
    const changedRule = await post({ code: (await buildBundle(dir)).code, manifest: await readGeneratedManifest(dir) })
    expect(changedRule.body).toMatchObject({ version: 3, created: true })
    expect(await runReached(p, changedRule.body.service, changedRule.body.reprocessing.id, apiKey)).toMatchObject({ queued: 1, fired: 1 })
    const last = await settled(id, 'older', apiKey)
    expect(firedSinceDeploy(last.timeline)).toEqual(['audit'])
    expect(last.facts).toMatchObject({ bumps: 1, notes: 1, audits: 11 })
  })
})
