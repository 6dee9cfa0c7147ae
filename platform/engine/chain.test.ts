/**
 * Forward-chaining semantics (docs/architecture.md, "When a rule fires"), with no database: small fixture
 * services under test/fixtures are bundled and loaded, and `chain` runs on them directly.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Json } from '../../sdk/index.js'
import { buildBundle } from './build.js'
import { loadTrusted, type TrustedBundle as LoadedBundle } from '../../test/support/trusted-bundle.js'
import type { LoadedWorkflow } from './bundle.js'
import { chain as chainOn, type ChainInput, type ChainResult, type HandlerRun } from './chain.js'

/** Chains in this process (semantics only; the sandbox has its own tests). */
const chain = (bundle: LoadedBundle, workflow: LoadedWorkflow, input: ChainInput): Promise<ChainResult> => chainOn(bundle.run, workflow, input)

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url))

async function load(fixture: string): Promise<LoadedBundle> {
  const { code } = await buildBundle(path.join(FIXTURES, fixture))
  return loadTrusted(fixture, code)
}

function workflow(bundle: LoadedBundle, name: string): LoadedWorkflow {
  const wf = bundle.workflows.get(name)
  if (!wf) throw new Error(`fixture ${bundle.service} has no workflow ${name}`)
  return wf
}

const fired = (result: ChainResult): (string | null | undefined)[] => result.timeline.filter((t) => t.kind === 'rule.fired').map((t) => t.rule)
const kinds = (result: ChainResult): string[] => result.timeline.map((t) => t.kind)
const signal = (name: string, argument: Json): HandlerRun => ({ target: { signal: name }, argument })
const fingerprint = (wf: LoadedWorkflow, rule: string): string => wf.byName.get(rule)!.fingerprint

let edgeBundle: LoadedBundle
let agenda: LoadedBundle
let failures: LoadedBundle
let alwaysV1: LoadedBundle
let alwaysV2: LoadedBundle

beforeAll(async () => {
  edgeBundle = await load('chain-edge')
  agenda = await load('chain-agenda')
  failures = await load('chain-failures')
  alwaysV1 = await load('chain-always-v1')
  alwaysV2 = await load('chain-always-v2')
})

describe('edge-triggering (refraction)', () => {
  const start = { level: 0, count: 0, note: '' }

  it('a rule whose match stays true fires once across evaluations', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const first = await chain(edgeBundle, wf, { facts: start, ruleState: {}, handlers: [signal('x', { level: 7 })] })
    expect(first.outcome).toBeNull()
    expect(fired(first)).toEqual(['high'])
    expect(first.facts).toEqual({ level: 7, count: 1, note: '' })
    expect(first.ruleState).toEqual({ [fingerprint(wf, 'high')]: true, [fingerprint(wf, 'touch')]: false })

    // level changes (so `high` is evaluated again) but its match stays true: no second firing.
    const second = await chain(edgeBundle, wf, { facts: first.facts, ruleState: first.ruleState, handlers: [signal('x', { level: 9 })] })
    expect(fired(second)).toEqual([])
    expect(second.facts).toEqual({ level: 9, count: 1, note: '' })
    expect(second.ruleState[fingerprint(wf, 'high')]).toBe(true)
    expect(second.firings).toBe(0)
    expect(second.outcome).toBeNull()
  })

  it('without the previous rule state the same facts fire the rule again (the state is what refracts)', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const result = await chain(edgeBundle, wf, { facts: { level: 7, count: 1, note: '' }, ruleState: {}, handlers: [signal('x', { level: 9 })] })
    expect(fired(result)).toEqual(['high'])
    expect(result.facts.count).toBe(2)
  })

  it('fires again only after its match went false and then true', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const on = await chain(edgeBundle, wf, { facts: start, ruleState: {}, handlers: [signal('x', { level: 5 })] })
    expect(fired(on)).toEqual(['high'])

    const off = await chain(edgeBundle, wf, { facts: on.facts, ruleState: on.ruleState, handlers: [signal('x', { level: 2 })] })
    expect(fired(off)).toEqual([])
    expect(off.ruleState[fingerprint(wf, 'high')]).toBe(false)
    expect(off.facts).toEqual({ level: 2, count: 1, note: '' })

    const again = await chain(edgeBundle, wf, { facts: off.facts, ruleState: off.ruleState, handlers: [signal('x', { level: 6 })] })
    expect(fired(again)).toEqual(['high'])
    expect(again.facts).toEqual({ level: 6, count: 2, note: '' })
    expect(again.ruleState[fingerprint(wf, 'high')]).toBe(true)
  })

  it('records the signal handler change before the firing it causes', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const result = await chain(edgeBundle, wf, {
      facts: start,
      ruleState: {},
      handlers: [{ ...signal('x', { level: 8 }), timeline: { kind: 'signal.received', data: { name: 'x' } } }],
    })
    expect(kinds(result)).toEqual(['signal.received', 'facts.changed', 'rule.fired', 'facts.changed'])
    expect(result.timeline[1]).toEqual({ kind: 'facts.changed', rule: null, data: { changes: { level: 8 } } })
    expect(result.timeline[3]).toEqual({ kind: 'facts.changed', rule: 'high', data: { changes: { count: 1 } } })
    expect(result.changed).toBe(true)
  })
})

describe('a write that changes no value triggers nothing', () => {
  it('a handler setting the value a fact already holds records no change and fires nothing', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const facts = { level: 7, count: 1, note: '' }
    const result = await chain(edgeBundle, wf, { facts, ruleState: { [fingerprint(wf, 'high')]: true, [fingerprint(wf, 'touch')]: false }, handlers: [signal('x', { level: 7 })] })
    expect(kinds(result)).not.toContain('facts.changed')
    expect(fired(result)).toEqual([])
    expect(result.facts).toEqual(facts)
    expect(result.changed).toBe(false)
  })

  it('a same-value write does not re-evaluate rules reading that path, a real change does', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const facts = { level: 7, count: 1, note: '' }
    // A recorded `false` for `high` while its match holds: `high` fires iff it is evaluated again.
    const ruleState = { [fingerprint(wf, 'high')]: false, [fingerprint(wf, 'touch')]: false }

    const same = await chain(edgeBundle, wf, { facts, ruleState, handlers: [signal('x', { level: 7 })] })
    expect(fired(same)).toEqual([])
    expect(kinds(same)).not.toContain('facts.changed')
    expect(same.ruleState[fingerprint(wf, 'high')]).toBe(false)

    const changed = await chain(edgeBundle, wf, { facts, ruleState, handlers: [signal('x', { level: 8 })] })
    expect(fired(changed)).toEqual(['high'])
  })

  it('a rule action writing the same value does not re-fire a rule reading that path', async () => {
    const wf = workflow(edgeBundle, 'edge')
    const facts = { level: 7, count: 1, note: '' }
    const ruleState = { [fingerprint(wf, 'high')]: false, [fingerprint(wf, 'touch')]: false }
    const result = await chain(edgeBundle, wf, { facts, ruleState, handlers: [signal('note', { note: 'touch' })] })
    // `touch` fires and sets level to 7 again: only the note change is recorded, `high` stays quiet.
    expect(fired(result)).toEqual(['touch'])
    expect(result.timeline.filter((t) => t.kind === 'facts.changed')).toEqual([
      { kind: 'facts.changed', rule: null, data: { changes: { note: 'touch' } } },
    ])
    expect(result.facts).toEqual({ level: 7, count: 1, note: 'touch' })
  })
})

describe('priority and declaration order', () => {
  it('among rules newly true at once, higher priority fires first; ties fire in declaration order', async () => {
    const wf = workflow(agenda, 'priorities')
    // first evaluation: every rule is false, so nothing fires and all states are recorded.
    const idle = await chain(agenda, wf, { facts: { go: false, log: [] }, ruleState: {}, handlers: [] })
    expect(fired(idle)).toEqual([])
    expect(Object.values(idle.ruleState)).toEqual([false, false, false, false])

    const result = await chain(agenda, wf, { facts: idle.facts, ruleState: idle.ruleState, handlers: [signal('go', {})] })
    expect(fired(result)).toEqual(['high', 'zeta', 'alpha', 'low'])
    expect(result.facts.log).toEqual(['high', 'zeta', 'alpha', 'low'])
    expect(result.timeline.filter((t) => t.kind === 'rule.fired').map((t) => t.data.priority)).toEqual([7, 3, 3, 0])
    expect(result.firings).toBe(4)

    // a fresh instance (no rule state) orders its first firings the same way
    const fresh = await chain(agenda, wf, { facts: { go: true, log: [] }, ruleState: {}, handlers: [] })
    expect(fresh.facts.log).toEqual(['high', 'zeta', 'alpha', 'low'])
  })

  it('a firing of a higher-priority rule can disable a lower-priority rule before it fires', async () => {
    const wf = workflow(agenda, 'disabling')
    const result = await chain(agenda, wf, { facts: { stage: 'open' }, ruleState: {}, handlers: [] })
    expect(fired(result)).toEqual(['claim'])
    expect(result.facts).toEqual({ stage: 'claimed' })
    expect(result.ruleState).toEqual({ [fingerprint(wf, 'claim')]: false, [fingerprint(wf, 'fallback')]: false })
    expect(result.outcome).toBeNull()
  })
})

describe('chaining to a fixpoint', () => {
  it('a rule that makes another rule true lets it fire in the same evaluation', async () => {
    const wf = workflow(agenda, 'chained')
    const result = await chain(agenda, wf, { facts: { stage: 'a', hops: 0 }, ruleState: {}, handlers: [] })
    expect(fired(result)).toEqual(['toB', 'toC'])
    expect(result.facts).toEqual({ stage: 'c', hops: 2 })
    expect(result.calls).toHaveLength(1)
    expect(result.calls[0]).toMatchObject({ op: 'call', rule: 'toC', function: 'publish', input: { stage: 'c' }, key: null, priority: 0, pool: 'default' })
    expect(result.outcome).toBeNull()
    expect(result.ruleState).toEqual({ [fingerprint(wf, 'toB')]: false, [fingerprint(wf, 'toC')]: false })

    // at the fixpoint, a further evaluation with the same facts and state does nothing.
    const again = await chain(agenda, wf, { facts: result.facts, ruleState: result.ruleState, handlers: [] })
    expect(fired(again)).toEqual([])
    expect(again.changed).toBe(false)
    expect(again.calls).toEqual([])
  })

  it('more than maxFirings firings fail the evaluation, naming the rules in the cycle', async () => {
    const wf = workflow(agenda, 'cycle')
    expect(wf.maxFirings).toBe(20)
    const result = await chain(agenda, wf, { facts: { flag: false }, ruleState: {}, handlers: [] })
    expect(result.outcome?.status).toBe('failed')
    const outcome = result.outcome as Extract<ChainResult['outcome'], { status: 'failed' }>
    expect(outcome.error.message).toContain('maxFirings')
    expect(outcome.error.message).toContain('ping')
    expect(outcome.error.message).toContain('pong')
    expect(outcome.error.details).toMatchObject({ code: 'PRX_RULE_CYCLE' })
    expect([...(outcome.error.details as { rules: string[] }).rules].sort()).toEqual(['ping', 'pong'])
    expect(fired(result)).toHaveLength(20)
    expect(fired(result).slice(0, 4)).toEqual(['ping', 'pong', 'ping', 'pong'])
    expect(result.timeline.at(-2)).toMatchObject({ kind: 'rule.failed', data: { code: 'PRX_RULE_CYCLE' } })
    expect(result.timeline.at(-1)).toMatchObject({ kind: 'instance.failed' })
  })
})

describe('always on: rules new to an instance', () => {
  it('after a deploy only the changed rule (new fingerprint) fires', async () => {
    const v1 = workflow(alwaysV1, 'always')
    const v2 = workflow(alwaysV2, 'always')
    expect(fingerprint(v2, 'steady')).toBe(fingerprint(v1, 'steady'))
    expect(fingerprint(v2, 'idle')).toBe(fingerprint(v1, 'idle'))
    expect(fingerprint(v2, 'changing')).not.toBe(fingerprint(v1, 'changing'))

    const before = await chain(alwaysV1, v1, { facts: { ready: true, steady: 0, tag: '' }, ruleState: {}, handlers: [] })
    expect(fired(before)).toEqual(['steady', 'changing'])
    expect(before.facts).toEqual({ ready: true, steady: 1, tag: 'v1' })
    expect(before.ruleState).toEqual({ [fingerprint(v1, 'steady')]: true, [fingerprint(v1, 'changing')]: true, [fingerprint(v1, 'idle')]: false })

    const after = await chain(alwaysV2, v2, { facts: before.facts, ruleState: before.ruleState, handlers: [] })
    expect(fired(after)).toEqual(['changing'])
    expect(after.facts).toEqual({ ready: true, steady: 1, tag: 'v2' })
    // the old fingerprint of `changing` is dropped, the new one recorded
    expect(after.ruleState).toEqual({ [fingerprint(v2, 'steady')]: true, [fingerprint(v2, 'changing')]: true, [fingerprint(v2, 'idle')]: false })

    const settled = await chain(alwaysV2, v2, { facts: after.facts, ruleState: after.ruleState, handlers: [] })
    expect(fired(settled)).toEqual([])
  })
})

describe('failures and completion', () => {
  it('a rule action that throws fails the evaluation, names the rule and applies none of its commands', async () => {
    const wf = workflow(failures, 'failing')
    const facts = { mode: 'throw', count: 0 }
    const result = await chain(failures, wf, { facts, ruleState: {}, handlers: [] })
    expect(fired(result)).toEqual(['boom'])
    expect(result.outcome?.status).toBe('failed')
    const outcome = result.outcome as Extract<ChainResult['outcome'], { status: 'failed' }>
    expect(outcome.error.message).toContain('rule boom')
    expect(outcome.error.message).toContain('kaboom')
    expect(outcome.error.details).toMatchObject({ code: 'PRX_RULE_THREW', rule: 'boom' })
    expect(result.facts).toEqual({ mode: 'throw', count: 0 })
    expect(kinds(result)).toEqual(['rule.fired', 'rule.failed', 'instance.failed'])
    expect(result.timeline[1]).toMatchObject({ kind: 'rule.failed', rule: 'boom', data: { code: 'PRX_RULE_THREW' } })
  })

  it('a rule that leaves facts violating the facts schema fails with PRX_FACTS_INVALID', async () => {
    const wf = workflow(failures, 'failing')
    const result = await chain(failures, wf, { facts: { mode: 'invalid', count: 0 }, ruleState: {}, handlers: [] })
    expect(fired(result)).toEqual(['negative'])
    expect(result.outcome?.status).toBe('failed')
    const outcome = result.outcome as Extract<ChainResult['outcome'], { status: 'failed' }>
    expect(outcome.error.details).toMatchObject({ code: 'PRX_FACTS_INVALID', rule: 'negative' })
    expect(outcome.error.message).toContain('count')
    expect(result.facts).toEqual({ mode: 'invalid', count: 0 })
    expect(kinds(result)).not.toContain('facts.changed')
  })

  it('complete(result) stops chaining and completes the instance', async () => {
    const wf = workflow(agenda, 'finishing')
    const working = await chain(agenda, wf, { facts: { stage: 'working', note: '' }, ruleState: {}, handlers: [] })
    expect(fired(working)).toEqual([])

    const result = await chain(agenda, wf, { facts: working.facts, ruleState: working.ruleState, handlers: [signal('done', {})] })
    // `afterwards` became true together with `finish` but never fires: completion ends the chain.
    expect(fired(result)).toEqual(['finish'])
    expect(result.outcome).toEqual({ status: 'completed', result: { ok: true, n: 3 } })
    expect(result.facts).toEqual({ stage: 'done', note: 'finished' })
    expect(result.timeline.at(-1)).toEqual({ kind: 'instance.completed', data: { result: { ok: true, n: 3 } } })
    expect(result.changed).toBe(true)
  })
})
