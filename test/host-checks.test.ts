/**
 * The host's checks on an isolate's answer (platform/engine/checks.ts): rule code shares its
 * isolate with the engine, so these answers are what a hostile bundle could hand back.
 */
import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../platform/config.js'
import { CheckFailure, checkChainResult, indexWorkflow, type LoadedWorkflow } from '../platform/engine/index.js'
import type { ServiceCatalog } from '../platform/engine/checks.js'

const workflow: LoadedWorkflow = indexWorkflow({ name: 'wf', maxFirings: 100, signals: [], rules: [{ name: 'r', priority: 0, order: 0, condition: { fact: 'facts', path: 'a', operator: 'equal', value: 1 }, fingerprint: 'fp-r', paths: ['a'], hasReaction: true, hasError: false }] })
const retry = { attempts: 3, backoff: 'exponential' as const, initialDelayMs: 100, maxDelayMs: 1000 }
// This tenant deployed `mine` (function encode on pool fast) and `other` (workflow child); nothing else.
const catalogs: Record<string, ServiceCatalog> = {
  mine: { functions: new Map([['encode', { name: 'encode', pool: 'fast', timeoutMs: 5000, retry, input: {}, output: {} }]]), workflows: new Set(['wf']) },
  other: { functions: new Map(), workflows: new Set(['child']) },
}
const lookup = async (service: string): Promise<ServiceCatalog | null> => catalogs[service] ?? null

const call = (extra: Record<string, unknown> = {}) => ({ function: 'encode', pool: 'mine:fast', retry: { attempts: 1e9, backoff: 'fixed', initialDelayMs: 0, maxDelayMs: 0 }, timeoutMs: 1e12, input: { n: 1 }, key: null, priority: 0, rule: 'r', ...extra })
const answer = (extra: Record<string, unknown> = {}) => JSON.stringify({ facts: { a: 1 }, ruleState: { 'fp-r': true }, timeline: [], calls: [], outcome: null, changed: true, firings: 1, ...extra })
const check = (text: string) => checkChainResult(text, workflow, 'mine', DEFAULT_LIMITS, lookup)
const failure = (text: string) => check(text).then(() => { throw new Error('accepted') }, (error: CheckFailure) => error)

describe('calls', () => {
  it("takes pool, retry and timeout from the tenant's stored manifest, never from the isolate", async () => {
    const result = await check(answer({ calls: [call()] }))
    expect(result.calls).toEqual([{ rule: 'r', function: 'encode', pool: 'mine:fast', retry, timeoutMs: 5000, input: { n: 1 }, key: null, priority: 0, fairnessKey: null, canWaitMs: null, batch: null }])
  })

  it('numbers micro-batches up to their size, splits them by bytes, and refuses a size or wait out of range', async () => {
    const sized = (n: number, extra: Record<string, unknown> = {}) => Array.from({ length: n }, (_, i) => call({ input: { n: i }, batchSize: 4, ...extra }))
    const result = await check(answer({ calls: [...sized(10), call(), ...sized(2, { priority: 1 })] }))
    expect(result.calls.map((c) => c.batch)).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, null, 3, 3])
    // Inputs of ~240 KB: at most four fit the 1 MiB a batch's job carries.
    const big = await check(answer({ calls: Array.from({ length: 5 }, () => call({ input: { blob: 'x'.repeat(240_000) }, batchSize: 10 })) }))
    expect(big.calls.map((c) => c.batch)).toEqual([0, 0, 0, 0, 1])
    expect((await failure(answer({ calls: [call({ batchSize: 5000 })] }))).message).toMatch(/batchSize: a batch size is at most 1000/)
    expect((await failure(answer({ calls: [call({ canWaitMs: 30 * 24 * 3600 * 1000 })] }))).message).toMatch(/canWaitMs: a call can wait at most 7 days/)
  })

  it("refuses a call to another tenant's service (a stub naming video-encoding/splitVideo), naming the rule", async () => {
    const e = await failure(answer({ calls: [call({ function: 'splitVideo', pool: 'video-encoding:splitters' })] }))
    expect(e).toBeInstanceOf(CheckFailure)
    expect(e.code).toBe('PRX_FUNCTION_UNKNOWN')
    expect(e.message).toMatch(/video-encoding\.splitVideo.*this tenant has no service video-encoding/)
  })

  it('refuses a function its service does not have, and a child start that names no service.workflow', async () => {
    expect((await failure(answer({ calls: [call({ function: 'nope' })] }))).code).toBe('PRX_FUNCTION_UNKNOWN')
    expect((await failure(answer({ calls: [call({ function: 'no-dot', pool: '@child' })] }))).code).toBe('PRX_RULE_THREW')
    // A child start runs among this tenant's services (test/layering.test.ts: not deployed → error section).
    expect((await check(answer({ calls: [call({ function: 'other.child', pool: '@child', retry: { attempts: 9 } })] }))).calls[0]).toMatchObject({ pool: '@child', function: 'other.child', retry: { attempts: 1 } })
  })

  it('refuses more calls than the limit (5,000 in one evaluation)', async () => {
    const e = await failure(answer({ calls: Array.from({ length: 5000 }, () => call()) }))
    expect(e.code).toBe('PRX_LIMIT_CALLS')
    expect(e.message).toMatch(/5000 calls, more than the limit of 1000/)
  })

  it('refuses a priority out of range and a huge or deep input', async () => {
    expect((await failure(answer({ calls: [call({ priority: 1e9 })] }))).code).toBe('PRX_LIMIT_PRIORITY')
    expect((await failure(answer({ calls: [call({ priority: 1.5 })] }))).code).toBe('PRX_LIMIT_PRIORITY')
    expect((await failure(answer({ calls: [call({ input: { s: 'x'.repeat(300_000) } })] }))).code).toBe('PRX_LIMIT_INPUT')
    let deep: unknown = 1
    for (let i = 0; i < 100; i++) deep = { d: deep }
    expect((await failure(answer({ calls: [call({ input: deep })] }))).code).toBe('PRX_LIMIT_INPUT')
  })

  it("refuses a manifest's retry policy or timeout beyond the platform's limits (attempts: 1e9, no delay)", async () => {
    catalogs.greedy = { functions: new Map([['spam', { name: 'spam', pool: 'p', timeoutMs: 1000, retry: { attempts: 1e9, backoff: 'fixed', initialDelayMs: 0, maxDelayMs: 0 }, input: {}, output: {} }], ['slow', { name: 'slow', pool: 'p', timeoutMs: 1e10, retry, input: {}, output: {} }]]), workflows: new Set() }
    expect((await failure(answer({ calls: [call({ function: 'spam', pool: 'greedy:p' })] }))).code).toBe('PRX_LIMIT_RETRY')
    expect((await failure(answer({ calls: [call({ function: 'slow', pool: 'greedy:p' })] }))).code).toBe('PRX_LIMIT_TIMEOUT')
  })
})

describe('facts and shape', () => {
  it('fails facts nested 3,000 deep at once, without overflowing the host stack', async () => {
    const deep = `${'{"d":'.repeat(3000)}1${'}'.repeat(3000)}`
    const e = await failure(`{"facts":${deep},"ruleState":{},"timeline":[],"calls":[],"outcome":null,"changed":true,"firings":0}`)
    expect(e.code).toBe('PRX_LIMIT_FACTS')
    expect(e.message).toMatch(/deeper than 64 levels/)
  })

  it('fails facts larger than the byte limit', async () => {
    expect((await failure(answer({ facts: { blob: 'x'.repeat(1_100_000) } }))).code).toBe('PRX_LIMIT_FACTS')
  })

  it('measures facts that grow when re-serialised: 300 KB of `1e20` in the answer is 1.3 MB of facts', async () => {
    const text = `{"facts":{"n":[${Array.from({ length: 60_000 }, () => '1e20').join(',')}]},"ruleState":{},"timeline":[],"calls":[],"outcome":null,"changed":true,"firings":0}`
    expect(3 * text.length).toBeLessThan(DEFAULT_LIMITS.maxFactsBytes)
    expect((await failure(text)).code).toBe('PRX_LIMIT_FACTS')
  })

  it('refuses malformed answers as the bundle breaking the protocol', async () => {
    expect((await failure('not json')).code).toBe('PRX_RULE_THREW')
    expect((await failure(answer({ facts: [1, 2] }))).code).toBe('PRX_RULE_THREW')
    expect((await failure(answer({ outcome: { status: 'hacked' } }))).code).toBe('PRX_RULE_THREW')
  })

  it('fails text PostgreSQL cannot store (NUL, a lone surrogate) in facts or a call input at once, instead of a write retried for ever', async () => {
    expect((await failure(answer({ facts: { a: 'x\u0000y' } }))).code).toBe('PRX_FACTS_INVALID')
    expect((await failure(answer({ facts: { ['k\ud800']: 1 } }))).code).toBe('PRX_FACTS_INVALID')
    expect((await failure(answer({ calls: [call({ input: { s: '\udc00' } })] }))).code).toBe('PRX_FACTS_INVALID')
    expect((await check(answer({ facts: { a: 1, emoji: '\ud83d\ude00' } }))).facts).toEqual({ a: 1, emoji: '\ud83d\ude00' })
  })

  it("keeps rule state only for the workflow's own fingerprints", async () => {
    const result = await check(answer({ ruleState: { 'fp-r': true, forged: true } }))
    expect(result.ruleState).toEqual({ 'fp-r': true })
  })
})
