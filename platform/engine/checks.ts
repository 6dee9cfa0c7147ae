/**
 * The host's checks on everything a tenant isolate returns: the tenancy boundary.
 * Rule code shares its isolate with the engine and can make it answer anything, so an answer is
 * held to its shape, to the platform's limits, and to what the tenant deployed:
 * - facts: a JSON object, at most `maxFactsBytes` as JSON and `maxDepth` deep;
 * - calls: at most `maxCalls`; each names a function of a service this tenant deployed (its pool,
 *   retry and timeout come from that service's stored manifest, never from the isolate), or is a
 *   child start (`service.workflow`, started among this tenant's services only); input at most
 *   `maxInputBytes` and `maxDepth` deep;
 *   priority within ±`maxPriority`; the manifest's retry and timeout within the platform's limits;
 * - rule state only for the workflow's own rule fingerprints; a bounded timeline.
 * A breach fails the instance with the limit's own code; nothing of the answer is applied.
 */
import { z } from 'zod'
import { MAX_BATCH_SIZE, MAX_CAN_WAIT_MS, type Json } from '../../sdk/index.js'
import type { ManifestFunction } from '../../sdk/manifest.js'
import type { Limits } from '../config.js'
import type { ChainResult, RecordedCall, TimelineDraft } from './chain.js'
import type { LoadedWorkflow } from './workflow.js'

/** The pool child-workflow starts go through (sdk/stub.ts CHILD_POOL). */
const CHILD_POOL = '@child'

/** A limit breach or a malformed answer: the instance fails with `code`. */
export class CheckFailure extends Error {
  constructor(readonly code: string, message: string, readonly details: Json = null) {
    super(message)
  }
}

/**
 * The longest answer an isolate may give (JSON text): facts, calls and timeline of one evaluation.
 * The engine in the isolate refuses to answer more, so a larger answer never reaches the host.
 */
export function answerLimit(limits: Limits): number {
  return 8 * limits.maxFactsBytes + 8 * 1024 * 1024
}

/** Text PostgreSQL cannot store: NUL, or half of a surrogate pair. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what must be found
export const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * How deep a JSON value nests (counted iteratively: a hostile value must not overflow the host's
 * stack; the walk stops past `max`), and whether any string or key in it is text PostgreSQL
 * refuses (which would fail the write and leave the instance retried for ever).
 */
export function scanJson(value: unknown, max: number): { depth: number; unstorable: boolean } {
  let deepest = 0
  let unstorable = typeof value === 'string' && UNSTORABLE.test(value)
  const stack: [unknown, number][] = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (depth + 1 > deepest) deepest = depth + 1
    if (deepest > max) break
    if (Array.isArray(v)) {
      for (const child of v) {
        if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
        else if (!unstorable && typeof child === 'string' && UNSTORABLE.test(child)) unstorable = true
      }
    } else {
      for (const key in v) {
        const child = (v as Record<string, unknown>)[key]
        if (!unstorable && UNSTORABLE.test(key)) unstorable = true
        if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
        else if (!unstorable && typeof child === 'string' && UNSTORABLE.test(child)) unstorable = true
      }
    }
  }
  return { depth: deepest, unstorable }
}

/** How deep a JSON value nests (see scanJson). */
export function jsonDepth(value: unknown, max: number): number {
  return scanJson(value, max).depth
}

const unstorableText = (where: string): CheckFailure =>
  new CheckFailure('PRX_FACTS_INVALID', `${where} holds text PostgreSQL cannot store (a \\u0000 or half of a surrogate pair): remove it, or encode binary data (base64)`)

/** What a deployed service offers to calls: its functions (from the stored manifest) and workflows. */
export interface ServiceCatalog {
  functions: ReadonlyMap<string, ManifestFunction> | null
  workflows: ReadonlySet<string>
}

/** Finds a service of the instance's tenant, or null when the tenant never deployed it. */
export type CatalogLookup = (service: string) => Promise<ServiceCatalog | null>

const Outcome = z.union([
  z.object({ status: z.literal('completed'), result: z.unknown() }),
  z.object({ status: z.literal('failed'), error: z.object({ message: z.string(), details: z.unknown() }) }),
])
const Call = z.object({
  function: z.string().max(300),
  pool: z.string().max(300),
  input: z.unknown(),
  key: z.string().max(1000).nullable(),
  priority: z.number(),
  fairnessKey: z.string().max(200, 'a fairness key has at most 200 characters').nullable().optional(),
  batchSize: z.number().int().min(1).max(MAX_BATCH_SIZE, `a batch size is at most ${MAX_BATCH_SIZE}`).nullable().optional(),
  canWaitMs: z.number().int().min(1).max(MAX_CAN_WAIT_MS, 'a call can wait at most 7 days').nullable().optional(),
  rule: z.string().max(300),
})

/** Most input bytes one micro-batch's job carries; a batch that would carry more is split. */
export const MAX_BATCH_BYTES = 1024 * 1024
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Parses and checks an isolate's answer to `chain`, resolving each call against the tenant's
 * services. On the hot path (every step): one parse, one depth walk, no copies.
 */
export async function checkChainResult(text: string, workflow: LoadedWorkflow, service: string, limits: Limits, lookup: CatalogLookup): Promise<ChainResult> {
  const maxAnswer = answerLimit(limits)
  if (text.length > maxAnswer) throw new CheckFailure('PRX_LIMIT_FACTS', `the evaluation answered ${text.length} characters, more than the ${maxAnswer} its facts, calls and timeline may take`)
  let answer: Record<string, unknown>
  try {
    answer = JSON.parse(text) as Record<string, unknown>
  } catch (error) {
    throw new CheckFailure('PRX_RULE_THREW', `the rule sandbox answered with malformed JSON (${(error as Error).message})`)
  }
  const malformed = (what: string): never => {
    throw new CheckFailure('PRX_RULE_THREW', `the rule sandbox answered with a malformed evaluation: ${what}`)
  }
  if (!isObject(answer)) malformed('not an object')
  // Depth before anything walks it (iteratively): facts sit one level down, the rest a few more.
  const { depth, unstorable } = scanJson(answer, limits.maxDepth + 8)
  if (depth > limits.maxDepth + 1 && jsonDepth(answer.facts, limits.maxDepth) > limits.maxDepth) {
    throw new CheckFailure('PRX_LIMIT_FACTS', `facts nest deeper than ${limits.maxDepth} levels (PRAXIS_MAX_DEPTH): keep facts flat, or store large documents elsewhere and keep a reference`)
  }
  if (Array.isArray(answer.calls) && answer.calls.length > limits.maxCalls) {
    throw new CheckFailure('PRX_LIMIT_CALLS', `one evaluation made ${answer.calls.length} calls, more than the limit of ${limits.maxCalls} (PRAXIS_MAX_CALLS): fan out in batches (a rule that calls again as results come in)`, { calls: answer.calls.length, limit: limits.maxCalls })
  }
  if (depth > limits.maxDepth + 8) throw new CheckFailure('PRX_LIMIT_INPUT', `a call input, result or timeline entry nests deeper than ${limits.maxDepth} levels (PRAXIS_MAX_DEPTH)`)
  if (unstorable) throw unstorableText('what the evaluation wrote (facts, a call input, a result or a timeline entry)')
  const { facts, ruleState, timeline, calls, outcome, changed, firings } = answer
  if (!isObject(facts)) malformed('facts is not an object')
  if (!isObject(ruleState)) malformed('ruleState is not an object')
  if (!Array.isArray(timeline)) malformed('timeline is not an array')
  if (!Array.isArray(calls)) malformed('calls is not an array')
  if (typeof changed !== 'boolean' || !Number.isInteger(firings) || (firings as number) < 0) malformed('changed or firings is not what it must be')
  if (outcome !== null && !Outcome.safeParse(outcome).success) malformed('outcome is neither null, completed nor failed')
  // Re-serialised, facts grow at most ~5.3x over the answer's text (`9e20` is 4 characters, 21 as
  // JSON; UTF-8 takes at most 3 bytes per unit): a short enough answer cannot hold too many bytes.
  if (6 * text.length > limits.maxFactsBytes) {
    const factsBytes = Buffer.byteLength(JSON.stringify(facts))
    if (factsBytes > limits.maxFactsBytes) {
      throw new CheckFailure('PRX_LIMIT_FACTS', `facts would be ${factsBytes} bytes as JSON, more than the limit of ${limits.maxFactsBytes} (PRAXIS_MAX_FACTS_BYTES): keep large data out of facts (store it, keep a reference)`, { bytes: factsBytes, limit: limits.maxFactsBytes })
    }
  }
  const maxTimeline = 3 * (workflow.maxFirings + limits.maxCalls) + 1000
  const entries = timeline as unknown[]
  if (entries.length > maxTimeline) malformed(`${entries.length} timeline entries, more than ${maxTimeline}`)
  for (const entry of entries) {
    const e = entry as Record<string, unknown>
    if (!isObject(e) || typeof e.kind !== 'string' || e.kind.length > 100 || !isObject(e.data) || !(e.rule === undefined || e.rule === null || (typeof e.rule === 'string' && e.rule.length <= 300))) malformed('a timeline entry is not { kind, rule, data }')
  }
  // Only the workflow's own fingerprints (as many as it has rules, whatever the answer holds).
  const given = ruleState as Record<string, unknown>
  const state: Record<string, boolean> = {}
  for (const { fingerprint } of workflow.rules) {
    const truth = given[fingerprint]
    if (Object.hasOwn(given, fingerprint) && typeof truth === 'boolean') state[fingerprint] = truth
  }
  const resolved: RecordedCall[] = []
  const sizes: (number | null)[] = []
  for (const raw of calls as unknown[]) {
    const call = await checkCall(raw, service, limits, lookup, depth)
    resolved.push(call.call)
    sizes.push(call.batchSize)
  }
  numberBatches(resolved, sizes)
  return {
    facts: facts as Record<string, Json>,
    ruleState: state,
    timeline: entries as TimelineDraft[],
    calls: resolved,
    outcome: outcome as ChainResult['outcome'],
    changed: changed as boolean,
    firings: firings as number,
  }
}

/**
 * Numbers the calls' micro-batches: consecutive calls asking for batches (one callEach's) of one
 * rule, function, pool, priority, fairness key and wait share a number, up to their batch size
 * and MAX_BATCH_BYTES of inputs; any other call has none (a job of its own).
 */
function numberBatches(calls: RecordedCall[], sizes: readonly (number | null)[]): void {
  let batch = -1
  let count = 0
  let bytes = 0
  let previous: string | null = null
  calls.forEach((call, i) => {
    const size = sizes[i] ?? null
    if (size === null || size <= 1 || call.pool === CHILD_POOL) {
      call.batch = null
      previous = null
      return
    }
    const group = JSON.stringify([call.rule, call.function, call.pool, call.priority, call.fairnessKey ?? null, call.canWaitMs ?? null, size])
    const itemBytes = Buffer.byteLength(JSON.stringify(call.input))
    if (group !== previous || count >= size || bytes + itemBytes > MAX_BATCH_BYTES) {
      batch++
      count = 0
      bytes = 0
    }
    previous = group
    count++
    bytes += itemBytes
    call.batch = batch
  })
}

/** `answerDepth`: the whole answer's depth; a call's input sits three levels down in it. */
async function checkCall(raw: unknown, ownService: string, limits: Limits, lookup: CatalogLookup, answerDepth: number): Promise<{ call: RecordedCall; batchSize: number | null }> {
  const call = await resolveCall(raw, ownService, limits, lookup, answerDepth)
  return { call, batchSize: (raw as { batchSize?: number | null }).batchSize ?? null }
}

async function resolveCall(raw: unknown, ownService: string, limits: Limits, lookup: CatalogLookup, answerDepth: number): Promise<RecordedCall> {
  const parsed = Call.safeParse(raw)
  if (!parsed.success) throw new CheckFailure('PRX_RULE_THREW', `the rule sandbox answered with a malformed call: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  const call = parsed.data
  const name = call.function
  if (!Number.isInteger(call.priority) || Math.abs(call.priority) > limits.maxPriority) {
    throw new CheckFailure('PRX_LIMIT_PRIORITY', `rule ${call.rule} calls ${name} with priority ${call.priority}: priorities are whole numbers from ${-limits.maxPriority} to ${limits.maxPriority} (PRAXIS_MAX_PRIORITY)`, { priority: call.priority, limit: limits.maxPriority })
  }
  const inputBytes = Buffer.byteLength(JSON.stringify(call.input ?? null))
  if (inputBytes > limits.maxInputBytes) {
    throw new CheckFailure('PRX_LIMIT_INPUT', `rule ${call.rule} calls ${name} with an input of ${inputBytes} bytes, more than the limit of ${limits.maxInputBytes} (PRAXIS_MAX_INPUT_BYTES): pass a reference to large data instead`, { bytes: inputBytes, limit: limits.maxInputBytes })
  }
  if (answerDepth > limits.maxDepth + 3 && jsonDepth(call.input, limits.maxDepth) > limits.maxDepth) {
    throw new CheckFailure('PRX_LIMIT_INPUT', `rule ${call.rule} calls ${name} with an input nested deeper than ${limits.maxDepth} levels (PRAXIS_MAX_DEPTH)`)
  }
  const base = { rule: call.rule, input: (call.input ?? null) as Json, key: call.key, priority: call.priority, fairnessKey: call.fairnessKey ?? null, canWaitMs: call.canWaitMs ?? null }
  if (call.pool === CHILD_POOL) {
    // The child is started inside this tenant (the start resolves `service.workflow` among the
    // tenant's own services); one that is not deployed fails the call, for an error section.
    if (!/^[A-Za-z][\w-]{0,99}\.[A-Za-z][\w-]{0,99}$/.test(name)) throw new CheckFailure('PRX_RULE_THREW', `rule ${call.rule} starts a workflow named ${JSON.stringify(name.slice(0, 100))}: a child start names service.workflow`)
    return { ...base, function: name, pool: CHILD_POOL, retry: { attempts: 1, backoff: 'fixed', initialDelayMs: 0, maxDelayMs: 0 }, timeoutMs: 60_000 }
  }
  // A stub qualifies its pool by its service (`service:pool`); the host keeps only the service.
  const colon = call.pool.indexOf(':')
  const service = colon > 0 ? call.pool.slice(0, colon) : ownService
  const catalog = await lookup(service)
  const fn = catalog?.functions?.get(name)
  if (!fn) {
    const why = !catalog ? `this tenant has no service ${service}` : !catalog.functions ? `service ${service} was deployed without its manifest (deploy it with \`praxis deploy\`, which sends generated/manifest.json)` : `service ${service} has no function ${name}`
    throw new CheckFailure('PRX_FUNCTION_UNKNOWN', `rule ${call.rule} calls ${service}.${name}, but ${why}: a rule can call only functions of services its own tenant deployed`, { service, function: name })
  }
  const retry = fn.retry
  if (retryOutOfLimits(retry, limits)) {
    throw new CheckFailure('PRX_LIMIT_RETRY', `function ${service}.${name} retries ${retry.attempts} times from ${retry.initialDelayMs} ms up to ${retry.maxDelayMs} ms: the platform allows at most ${limits.maxRetryAttempts} attempts and delays from ${limits.minRetryDelayMs} to ${limits.maxRetryDelayMs} ms`, { retry })
  }
  if (fn.timeoutMs > limits.maxFunctionTimeoutMs) {
    throw new CheckFailure('PRX_LIMIT_TIMEOUT', `function ${service}.${name} has a timeout of ${fn.timeoutMs} ms, more than the limit of ${limits.maxFunctionTimeoutMs} ms (PRAXIS_MAX_FUNCTION_TIMEOUT_MS)`, { timeoutMs: fn.timeoutMs })
  }
  return { ...base, function: name, pool: `${service}:${fn.pool}`, retry: { attempts: retry.attempts, backoff: retry.backoff, initialDelayMs: retry.initialDelayMs, maxDelayMs: retry.maxDelayMs }, timeoutMs: fn.timeoutMs }
}

/** Whether a function's retry policy asks for more than the platform allows (at deploy and on every call). */
export function retryOutOfLimits(retry: ManifestFunction['retry'], limits: Limits): boolean {
  return retry.attempts > limits.maxRetryAttempts || (retry.attempts > 1 && retry.initialDelayMs < limits.minRetryDelayMs)
    || retry.initialDelayMs > limits.maxRetryDelayMs || retry.maxDelayMs > limits.maxRetryDelayMs
}

/** Checks the facts `init` produced (the same limits as an evaluation's facts). */
export function checkFacts(facts: unknown, limits: Limits): Record<string, Json> {
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) throw new CheckFailure('PRX_RULE_THREW', 'init answered facts that are not an object')
  const { depth, unstorable } = scanJson(facts, limits.maxDepth)
  if (depth > limits.maxDepth) throw new CheckFailure('PRX_LIMIT_FACTS', `init returned facts nested deeper than ${limits.maxDepth} levels (PRAXIS_MAX_DEPTH)`)
  if (unstorable) throw unstorableText('the facts init returned')
  const bytes = Buffer.byteLength(JSON.stringify(facts))
  if (bytes > limits.maxFactsBytes) throw new CheckFailure('PRX_LIMIT_FACTS', `init returned facts of ${bytes} bytes, more than the limit of ${limits.maxFactsBytes} (PRAXIS_MAX_FACTS_BYTES)`, { bytes, limit: limits.maxFactsBytes })
  return facts as Record<string, Json>
}
