/**
 * The rule sandbox on its own (no database): one isolate per tenant bundle, deterministic rule
 * code, no state between evaluations, overruns that fail only their own evaluation, and a host
 * event loop that never waits for rule code. The API-level hostile suite is test/hostile.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BundleCache, buildBundle, IsolateSandbox, type LoadedBundle } from '../platform/engine/index.js'

let bundles: BundleCache
let code: string

beforeAll(async () => {
  bundles = new BundleCache({ limits: { ruleTimeoutMs: 300 } })
  code = (await buildBundle('test/fixtures/clock')).code
})
afterAll(async () => bundles?.close())

const request = (workflow: string, facts: Record<string, unknown>, now: number, seed: number): string =>
  JSON.stringify({ workflow, input: { facts, ruleState: {}, handlers: [] }, now, seed })

async function evaluate(bundle: LoadedBundle, workflow: string, facts: Record<string, unknown>, now = 1_700_000_000_000, seed = 7): Promise<{ facts: Record<string, unknown>; calls: unknown[] }> {
  return JSON.parse(await bundles.sandbox.call(bundle.sandbox, 'chain', request(workflow, facts, now, seed))) as { facts: Record<string, unknown>; calls: unknown[] }
}

describe('determinism', () => {
  it('gives rule code the logical time and a seeded random, the same on every run of the same evaluation', async () => {
    const bundle = await bundles.load('tenant-a', 'clock', code)
    const first = await evaluate(bundle, 'clock', { label: 'x', stage: 'new' }, 1_700_000_000_000, 42)
    expect(first.facts).toMatchObject({ stage: 'read', now: 1_700_000_000_000, iso: new Date(1_700_000_000_000).toISOString() })
    expect(first.facts.text).toBe(new Date(1_700_000_000_000).toString())
    // Intl formats "now" at the logical time too, not the wall clock.
    expect(first.facts.formatted).toBe(new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', dateStyle: 'medium', timeStyle: 'medium' }).format(1_700_000_000_000))
    const again = await evaluate(bundle, 'clock', { label: 'x', stage: 'new' }, 1_700_000_000_000, 42)
    expect(again).toEqual(first)
    // Another instance or revision (another seed) draws other numbers; another event, another time.
    const other = await evaluate(bundle, 'clock', { label: 'x', stage: 'new' }, 1_800_000_000_000, 43)
    expect(other.facts.random).not.toEqual(first.facts.random)
    expect(other.facts.now).toBe(1_800_000_000_000)
  })

  it('keeps no state on the global object, or on built-ins it does not reach, from one evaluation (or instance) to the next', async () => {
    const bundle = await bundles.load('tenant-a', 'clock', code)
    const counts: unknown[] = []
    for (let i = 0; i < 3; i++) counts.push((await evaluate(bundle, 'clock', { label: `i${i}`, stage: 'new' }, 1, i)).facts.count)
    expect(counts).toEqual([0, 0, 0])
  })

  it('gives each tenant its own isolate, even for the same code', async () => {
    const a = await bundles.load('tenant-a', 'clock', code)
    const b = await bundles.load('tenant-b', 'clock', code)
    expect(a.sandbox.key).not.toBe(b.sandbox.key)
    expect((await evaluate(b, 'clock', { label: 'b', stage: 'new' })).facts.stage).toBe('read')
  })
})

describe('overruns', () => {
  it('fails only the evaluation that left a microtask loop running, and the next one (another tenant) runs', async () => {
    const spinning = await bundles.load('tenant-spin', 'clock', code)
    const other = await bundles.load('tenant-other', 'clock', code)
    // The host's event loop keeps turning while the isolate spins.
    let turns = 0
    const ticker = setInterval(() => turns++, 10)
    const failed = await evaluate(spinning, 'spinner', { spin: true, done: false }).then(() => null, (error: { code?: string }) => error)
    clearInterval(ticker)
    expect(failed).toMatchObject({ code: 'PRX_RULE_TIMEOUT' })
    expect(turns).toBeGreaterThan(5)
    expect((await evaluate(other, 'spinner', { spin: false, done: false })).facts).toEqual({ spin: false, done: true })
    // The spinning tenant's isolate was disposed of and loads afresh: its honest instances go on.
    expect((await evaluate(spinning, 'spinner', { spin: false, done: false })).facts).toEqual({ spin: false, done: true })
  })

  it('times out an evaluation whose promise never settles (a bundle that broke Promise.all), from the host', async () => {
    const stuck = await bundles.load('tenant-stuck', 'clock', `Promise.all = function () { return new Promise(() => undefined) };\n${code}`)
    const t0 = Date.now()
    const failed = await evaluate(stuck, 'clock', { label: 'x', stage: 'new' }).then(() => null, (error: { code?: string }) => error)
    expect(failed).toMatchObject({ code: 'PRX_RULE_TIMEOUT' })
    expect(Date.now() - t0).toBeLessThan(30_000)
    const other = await bundles.load('tenant-b', 'clock', code)
    expect((await evaluate(other, 'clock', { label: 'b', stage: 'new' })).facts.stage).toBe('read')
  })

  it('does not take rule code at its word: a thrown "timed out" message is a throw, and the isolate stays', async () => {
    const liar = await bundles.load('tenant-liar', 'clock', `${code};\nglobalThis.__praxis.execute = () => { throw new Error('Script execution timed out.') };`)
    const failed = await evaluate(liar, 'clock', { label: 'x', stage: 'new' }).then(() => null, (error: { code?: string }) => error)
    expect(failed).toMatchObject({ code: 'PRX_RULE_THREW' })
    const sandbox = bundles.sandbox as IsolateSandbox
    const loaded = sandbox.size
    await evaluate(liar, 'clock', { label: 'x', stage: 'new' }).catch(() => undefined)
    expect(sandbox.size).toBe(loaded)
  })

  it('refuses a bundle whose top-level code never ends, without blocking the host', async () => {
    let turns = 0
    const ticker = setInterval(() => turns++, 10)
    const quick = new BundleCache({ limits: { bundleLoadMs: 300 } })
    const refused = await quick.load('tenant-loop', 'clock', `for (;;) {};\n${code}`).then(() => null, (error: { code?: string; message?: string }) => error)
    clearInterval(ticker)
    await quick.close()
    expect(refused).toMatchObject({ code: 'PRX_BUNDLE_INVALID' })
    expect(refused?.message).toMatch(/ran longer than 300 ms/)
    expect(turns).toBeGreaterThan(5)
  })

  it('refuses a bundle whose top-level code allocates past the memory cap, and the process lives on', async () => {
    const small = new BundleCache({ limits: { ruleMemoryMb: 16 } })
    const refused = await small.load('tenant-alloc', 'clock', `globalThis.keep = []; for (;;) globalThis.keep.push(new Array(10000).fill(1.5));\n${code}`).then(() => null, (error: { code?: string; details?: unknown }) => error)
    await small.close()
    expect(refused).toMatchObject({ code: 'PRX_BUNDLE_INVALID' })
    expect(['PRX_RULE_MEMORY', 'PRX_RULE_TIMEOUT'], (refused as { message?: string })?.message).toContain((refused?.details as { code?: string })?.code)
  })
})

describe('module state', () => {
  it('refuses to build rule code that keeps state in a module-level variable, naming the file and line', async () => {
    const refused = await buildBundle('test/fixtures/module-state').then(() => null, (error: { code?: string; message?: string }) => error)
    expect(refused).toMatchObject({ code: 'PRX_BUNDLE_BUILD_FAILED' })
    expect(refused?.message).toMatch(/test\/fixtures\/module-state\/workflows\.ts:5: module-level `let count`/)
  })
})
