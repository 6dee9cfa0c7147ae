/**
 * The evaluation transaction (docs/architecture.md, "The step: one evaluation"): lock the instance, run the handlers
 * of its events, forward-chain, then write facts, timeline, invocations and their jobs, and mark
 * the events consumed, in one commit. Both the worker (fused step) and evaluate jobs call it.
 *
 * The fused step first tries an optimistic variant of the same thing: evaluate on the instance as
 * the invoke job (or a read) saw it, and write with a revision guard in one statement, so a step
 * holds no lock while rules run and costs one statement. Any conflict falls back to the lock.
 */
import type pg from 'pg'
import type { Json } from '../../sdk/index.js'
import { PraxisError } from '../errors.js'
import { appendEvent, appendEvents, ensureTasks, writeEvaluation, type EagerJob, type WriteGuard } from '../queue/index.js'
import {
  rollback, finishAndLock, finishInvocation, getInvocations, hasPendingEvents, insertInstance, lockInstance, readInstance,
  type InvocationJob, type InvocationRow, type LockedInstance, type ParentLink, type PendingEvent,
} from '../store/index.js'
import { createHash } from 'node:crypto'
import type { RunResult } from '../../sdk/runtime.js'
import type { ErrorCode } from '../errors.js'
import type { LoadedBundle } from './bundle.js'
import type { BundleCache } from './bundle-cache.js'
import type { ChainResult, HandlerRun, TimelineDraft } from './chain.js'
import { CheckFailure, checkChainResult, checkFacts } from './checks.js'
import { SandboxError } from './sandbox.js'

/** What happened to an instance in one evaluation. */
export interface EvaluationSummary {
  instanceId: string
  status: LockedInstance['status']
  revision: number
  firings: number
  invocations: number
  /** A new invocation's job locked to the calling worker (eager dispatch), for it to run now. */
  eager?: EagerJob | null
}

type Queryable = Pick<pg.PoolClient, 'query'>

/** An invocation's final result, as the worker reports it. */
export type InvocationResult =
  | { status: 'succeeded'; output: Json; attempts: number }
  | { status: 'failed'; failure: { kind: 'retryable' | 'fatal' | 'timeout' | 'lost' | 'cancelled'; message: string; attempts: number }; attempts: number }

export class Evaluator {
  /** Invoke queues whose graphile-worker task rows exist (ensureTasks). */
  readonly #knownTasks = new Set<string>()

  /** Rule code runs in `bundles`' sandbox, under its limits. */
  constructor(private readonly pool: pg.Pool, private readonly bundles: BundleCache) {}

  /** Disposes of the rule sandbox's isolates. */
  async close(): Promise<void> {
    await this.bundles.close()
  }

  /**
   * Checks a signal's name and payload against the workflow, in the bundle's sandbox. Throws
   * PRX_SIGNAL_UNKNOWN or PRX_INPUT_INVALID (or the rule code's failure) when it is refused.
   */
  async checkSignal(tenantId: string, bundleId: string, workflow: string, name: string, payload: unknown): Promise<void> {
    const bundle = await this.bundles.get(this.pool, tenantId, bundleId)
    const now = Date.now()
    const answer = await this.#run(bundle, 'checkSignal', { workflow, signal: name, payload: payload ?? null, now, seed: seedOf(`signal:${tenantId}:${now}`) }, `the signal check of ${workflow}`)
    if (!answer.ok) throw new PraxisError(answer.error.code === 'PRX_SIGNAL_UNKNOWN' ? 'PRX_SIGNAL_UNKNOWN' : 'PRX_INPUT_INVALID', answer.error.message, { details: answer.error.details ?? null })
  }

  /** Runs `init` or a signal check in the bundle's isolate; a sandbox failure becomes a PraxisError with its code. */
  async #run(bundle: LoadedBundle, fn: 'init' | 'checkSignal' | 'migrate', request: Record<string, unknown>, what: string): Promise<RunResult | { ok: true }> {
    let text: string
    try {
      text = await this.bundles.sandbox.call(bundle.sandbox, fn, JSON.stringify(request))
    } catch (error) {
      if (error instanceof SandboxError) throw new PraxisError(error.code, `${what} failed: ${error.message}`, { details: { code: error.code } })
      throw error
    }
    let answer: unknown
    try {
      answer = JSON.parse(text)
    } catch {
      answer = null
    }
    const a = answer as { ok?: unknown; facts?: unknown; error?: { code?: unknown; message?: unknown; details?: unknown } } | null
    if (a?.ok === true) return fn !== 'checkSignal' ? { ok: true, facts: a.facts as Record<string, Json>, changes: [], calls: [], outcome: null } : { ok: true }
    if (a?.ok === false && typeof a.error?.message === 'string') {
      // Details (zod issues) go into an HTTP answer: bounded, and dropped when large.
      const details = a.error.details === undefined || JSON.stringify(a.error.details).length > MAX_DETAILS_CHARS ? undefined : a.error.details
      return { ok: false, error: { code: typeof a.error.code === 'string' ? a.error.code.slice(0, 100) : 'PRX_RULE_THREW', message: a.error.message.slice(0, 10_000), details } }
    }
    throw new PraxisError('PRX_RULE_THREW', `${what} answered malformed JSON: the bundle broke the sandbox protocol`, { details: { code: 'PRX_RULE_THREW' } })
  }

  /**
   * Starts an instance: validates the input, runs `init`, inserts the row and evaluates it, in one
   * transaction. The same idempotency key returns the first instance (`created: false`). A child
   * workflow names its `parent`: its end then reaches the parent's reaction or error section.
   */
  async start(tenantId: string, target: { service: string; workflow: string; bundleId: string }, input: unknown, idempotencyKey: string | null, parent: ParentLink | null = null): Promise<{ id: string; created: boolean; summary: EvaluationSummary | null }> {
    // Rule code runs before a connection is taken: a slow init holds no connection of the pool.
    const bundle = await this.bundles.get(this.pool, tenantId, target.bundleId)
    const now = Date.now()
    const init = await this.#run(bundle, 'init', { workflow: target.workflow, input: input ?? null, now, seed: seedOf(`init:${tenantId}:${target.workflow}:${idempotencyKey ?? now}`) }, `init of ${target.workflow}`)
    if (!init.ok) throw startError(init.error.code, init.error.message, init.error.details)
    let facts: Record<string, Json>
    try {
      facts = checkFacts((init as { facts?: unknown }).facts, this.bundles.limits)
    } catch (error) {
      if (error instanceof CheckFailure) throw startError(error.code, error.message)
      throw error
    }
    const client = await this.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('begin')
      try {
        const { id, created } = await insertInstance(client, { tenantId, service: target.service, workflow: target.workflow, bundleId: target.bundleId, facts, factsVersion: bundle.workflows.get(target.workflow)?.factsVersion ?? 1, idempotencyKey, parent })
        let summary: EvaluationSummary | null = null
        if (created) {
          const locked = await lockInstance(client, tenantId, id, { nowait: false })
          summary = await this.#evaluateLocked(client, locked as LockedInstance, [], [{ kind: 'instance.started', data: { input: input as Json, facts } }])
        }
        await client.query('commit')
        return { id, created, summary }
      } catch (error) {
        broken = await rollback(client)
        throw error
      }
    } finally {
      client.release(broken)
    }
  }

  /**
   * Reads the instance an invocation belongs to, without a lock: start it while the function runs
   * and pass it to `recordResult`, so the fused step usually needs no lock and one write.
   */
  snapshot(job: Pick<InvocationJob, 'tenant_id' | 'instance_id'>): Promise<LockedInstance | null> {
    return readInstance(this.pool, job.tenant_id, job.instance_id).catch(() => null)
  }

  /**
   * Records an invocation's final result and reacts to it: the fused step, one commit.
   *
   * With a `snapshot` of a running instance and no pending events, it evaluates on the snapshot
   * and writes everything in one statement that applies only if the instance is still at the
   * revision read (optimistic: no lock held while rules run). Otherwise, or when the instance moved,
   * it takes the instance lock with NOWAIT and evaluates in a transaction; when another evaluation
   * holds the lock, it records the result as an event and leaves an evaluate job. Returns null when
   * the invocation was already final (a duplicate run): its reaction must not run twice.
   * `job`, the graphile-worker job running the invocation, is completed by the optimistic write
   * while its lock is still `job.lockedBy`'s; with `eager`, that write locks the next invocation's
   * job to the worker (summary.eager).
   */
  async recordResult(job: InvocationJob, result: InvocationResult, snapshot?: Promise<LockedInstance | null>, running?: { id: string; lockedBy: string }, eager?: WriteGuard['eager']): Promise<EvaluationSummary | 'queued' | null> {
    return this.recordResults([{ job, result }], snapshot, running, eager)
  }

  /**
   * `recordResult` for the final results of several invocations of one instance (a micro-batch's),
   * in one evaluation: their reactions and error sections run in the order given, in one commit.
   * Results of invocations that were already final are left out (each reacts once); null when all were.
   */
  async recordResults(items: readonly { job: InvocationJob; result: InvocationResult }[], snapshot?: Promise<LockedInstance | null>, running?: { id: string; lockedBy: string }, eager?: WriteGuard['eager']): Promise<EvaluationSummary | 'queued' | null> {
    const first = items[0]
    if (!first) return null
    if (items.some((i) => i.job.instance_id !== first.job.instance_id || i.job.tenant_id !== first.job.tenant_id)) throw new Error('recordResults: every result must be of one instance')
    const results = items.map(({ job, result }) => ({ invocationId: job.id, result }))
    const seen = await snapshot
    if (seen && seen.status === 'running' && seen.pending.length === 0) {
      const rows = items.map(({ job, result }) => finishedRow(job, result))
      const written = await this.#evaluate(this.pool, seen, rows, [], { expectedRevision: seen.revision, results, ...(running ? { jobId: running.id, lockedBy: running.lockedBy } : {}), ...(eager ? { eager } : {}) })
      if (written === 'duplicate') return null
      if (written !== 'moved' && written !== null) return written
    }
    const client = await this.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('begin')
      const locked = await finishAndLock(client, first.job, results)
      if (locked !== 'busy' && (locked.finished.length === 0 || !locked.instance)) {
        await client.query('commit')
        return null
      }
      if (locked !== 'busy') {
        const summary = await this.#evaluateLocked(client, locked.instance!, locked.finished, [])
        if (summary) {
          await client.query('commit')
          return summary
        }
      }
      // Busy, or the events we read were consumed meanwhile: queue the results for an evaluation.
      await client.query('rollback')
      await client.query('begin')
      const queued: { kind: 'result' | 'failure'; payload: Json }[] = []
      for (const { job, result } of items) {
        if (await finishInvocation(client, job.tenant_id, job.id, result)) queued.push({ kind: result.status === 'succeeded' ? 'result' : 'failure', payload: { invocationId: job.id } })
      }
      await appendEvents(client, first.job.tenant_id, first.job.instance_id, queued)
      await client.query('commit')
      return queued.length > 0 ? 'queued' : null
    } catch (error) {
      broken = await rollback(client)
      throw error
    } finally {
      client.release(broken)
    }
  }

  /**
   * Delivers a signal. Like a result, it is evaluated at once when the instance is free, else
   * queued. Returns false when `signalId` was delivered before.
   */
  async signal(tenantId: string, instanceId: string, name: string, payload: Json, signalId: string | null): Promise<boolean> {
    const client = await this.pool.connect()
    let appended: boolean
    try {
      await client.query('begin')
      appended = await appendEvent(client, { tenantId, instanceId, kind: 'signal', payload: { name, payload }, dedupeKey: signalId })
      await client.query('commit')
    } catch (error) {
      client.release(await rollback(client))
      throw error
    }
    client.release()
    if (appended) await this.evaluatePending(tenantId, instanceId, { nowait: true })
    return appended
  }

  /** Consumes an instance's pending events (the evaluate job). With `nowait`, a busy instance is left to its job. */
  async evaluatePending(tenantId: string, instanceId: string, options: { nowait: boolean }): Promise<EvaluationSummary | null> {
    // A burst of events leaves a job each, and the first evaluation consumes them all: the later
    // jobs find the inbox empty here, without waiting for the instance's lock.
    if (!await hasPendingEvents(this.pool, tenantId, instanceId)) return null
    const client = await this.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('begin')
      const locked = await lockInstance(client, tenantId, instanceId, options)
      if (!locked || locked === 'busy' || locked.pending.length === 0) {
        await client.query('rollback')
        return null
      }
      const summary = await this.#evaluateLocked(client, locked, [], [])
      await client.query(summary ? 'commit' : 'rollback')
      return summary
    } catch (error) {
      broken = await rollback(client)
      throw error
    } finally {
      client.release(broken)
    }
  }

  /**
   * Forward-chains in the bundle's isolate and checks the answer. Rule code that overruns its
   * time or memory, throws past the engine, or breaches a limit fails the instance (and only it).
   */
  async #chain(client: Queryable, instance: LockedInstance, bundle: LoadedBundle, handlers: HandlerRun[], fusedResult: boolean): Promise<ChainResult> {
    const workflow = bundle.workflows.get(instance.workflow)!
    // Logical time: the timestamp of the latest event this evaluation handles (a queued event's
    // append time; a result handled in the fused step arrives now). Rule code's Date and
    // Math.random derive from the request alone, so running it again gives the same commands.
    const request = JSON.stringify({
      workflow: instance.workflow,
      input: { facts: instance.facts, ruleState: instance.rule_state, handlers },
      now: fusedResult ? Date.now() : Math.max(0, ...instance.pending.map((e) => e.at ?? 0)) || Date.now(),
      seed: seedOf(`${instance.id}:${instance.revision}`),
    })
    try {
      const text = await this.bundles.sandbox.call(bundle.sandbox, 'chain', request)
      return await checkChainResult(text, workflow, instance.service, this.bundles.limits, this.bundles.catalog(client, instance.tenant_id))
    } catch (error) {
      if (!(error instanceof SandboxError) && !(error instanceof CheckFailure)) throw error
      const failure = { message: error.message, details: { code: error.code, ...(error instanceof CheckFailure && error.details && typeof error.details === 'object' ? error.details : {}) } as Json }
      return {
        facts: instance.facts,
        ruleState: instance.rule_state,
        timeline: [...handlers.flatMap((h) => (h.timeline ? [h.timeline] : [])), { kind: 'rule.failed', data: failure }, { kind: 'instance.failed', data: { error: failure } }],
        calls: [],
        outcome: { status: 'failed', error: failure },
        changed: true,
        firings: 0,
      }
    }
  }

  /** `#evaluate` on an instance whose lock this transaction holds (no guard, so no 'moved'). */
  async #evaluateLocked(client: Queryable, instance: LockedInstance, results: InvocationRow[], opening: TimelineDraft[]): Promise<EvaluationSummary | null> {
    const summary = await this.#evaluate(client, instance, results, opening)
    return typeof summary === 'string' ? null : summary
  }

  /**
   * Runs one evaluation: pending events first, then `results`, then chaining, and writes it.
   * On a locked instance, returns null, having written but not committed, when some of the events
   * it read had been consumed by another evaluation meanwhile (a stale read): the caller must roll
   * back. With a guard (no lock), returns 'moved' or 'duplicate' when nothing was written.
   */
  async #evaluate(client: Queryable, instance: LockedInstance, results: InvocationRow[], opening: TimelineDraft[], guard?: WriteGuard): Promise<EvaluationSummary | 'moved' | 'duplicate' | null> {
    const bundle = await this.bundles.get(client, instance.tenant_id, instance.active_bundle_id)
    const invocations = [...await this.#pendingInvocations(client, instance), ...results]
    const timeline: TimelineDraft[] = [...opening]
    const handlers: HandlerRun[] = []
    let failure: { message: string; details: Json } | null = null
    const byId = new Map(invocations.map((i) => [i.id, i]))
    const order = [...instance.pending.map((e) => ({ event: e, invocation: e.payload.invocationId ? byId.get(e.payload.invocationId) : undefined })), ...results.map((invocation) => ({ event: null, invocation }))]
    const workflow = bundle.workflows.get(instance.workflow)
    for (const { event, invocation } of order) {
      if (event?.kind === 'redeploy') {
        handlers.push({ target: { signal: '' }, skip: true, timeline: { kind: 'bundle.deployed', data: { version: event.payload.version ?? null } } })
      } else if (event?.kind === 'signal') {
        handlers.push({ target: { signal: event.payload.name ?? '' }, argument: event.payload.payload ?? null, timeline: { kind: 'signal.received', data: { name: event.payload.name, payload: event.payload.payload } } })
      } else if (invocation) {
        const handler = invocationHandler(bundle, instance.workflow, invocation)
        if ('fail' in handler) {
          failure ??= handler.fail
          handlers.push({ ...handler.run, skip: true })
        } else handlers.push(handler)
      }
    }
    if (!workflow) failure ??= { message: `workflow ${instance.workflow} is not in the active bundle of service ${instance.service}: deploy a bundle that has it, or cancel the instance`, details: { code: 'PRX_WORKFLOW_NOT_FOUND' } }
    // Reopening (always on for finished work): a deploy's event on a completed instance of a
    // workflow that opts in chains under the new rules; if one fires, the instance runs again.
    let reopening = instance.status === 'completed' && workflow?.reopen === true && !failure && instance.pending.some((e) => e.kind === 'redeploy')
    // Facts migrations: facts older than the workflow's facts version are migrated before any rule
    // sees them. A running instance whose facts cannot be migrated fails, keeping its old facts; a
    // completed one stays as it was (not reopened), and the timeline says why.
    let subject = instance
    let factsVersion: number | null = null
    if (workflow && !failure && (instance.status === 'running' || reopening) && instance.facts_version < workflow.factsVersion) {
      const migrated = await this.#migrate(bundle, instance, workflow.factsVersion)
      if ('facts' in migrated) {
        subject = { ...instance, facts: migrated.facts }
        factsVersion = workflow.factsVersion
        timeline.push({ kind: 'facts.migrated', data: { from: instance.facts_version, to: workflow.factsVersion } })
      } else {
        timeline.push({ kind: 'facts.migration.failed', data: migrated.failure })
        if (instance.status === 'running') failure = migrated.failure
        else reopening = false
      }
    }
    let result = (instance.status === 'running' || reopening) && workflow && !failure
      ? await this.#chain(client, subject, bundle, handlers, results.length > 0)
      : null
    // Nothing fired on the completed instance: it stays as it was (the deploy is noted).
    if (reopening && result && result.firings === 0) result = null
    const reopened = reopening && result !== null
    const running = instance.status === 'running' || reopened
    if (reopened) timeline.push({ kind: 'instance.reopened', data: { reason: 'a deployed rule that was added or changed matches the completed instance (the workflow reopens completed instances)' } })
    if (result) timeline.push(...result.timeline)
    else if (reopening) timeline.push(...handlers.map((h) => h.timeline!).filter(Boolean))
    else {
      timeline.push(...handlers.map((h) => h.timeline!).filter(Boolean))
      if (running && failure) timeline.push({ kind: 'instance.failed', data: { error: failure } })
      else if (!running) timeline.push({ kind: 'event.ignored', data: { reason: `instance is ${instance.status}` } })
    }
    const outcome = result?.outcome ?? (running && failure ? { status: 'failed' as const, error: failure } : null)
    const status = outcome?.status ?? (reopened ? 'running' : instance.status)
    if (!outcome && result?.calls.length) await ensureTasks(this.pool, instance.tenant_id, result.calls.map((c) => c.pool), this.#knownTasks)
    const write = await writeEvaluation(client, {
      tenantId: instance.tenant_id,
      instanceId: instance.id,
      bundleId: workflow ? instance.active_bundle_id : instance.bundle_id,
      status,
      // A completed instance that is not reopened keeps its facts (and their version) as they were.
      facts: result?.facts ?? (reopening ? instance.facts : subject.facts),
      factsVersion: result || !reopening ? factsVersion : null,
      ruleState: result?.ruleState ?? instance.rule_state,
      result: outcome?.status === 'completed' ? outcome.result : null,
      error: outcome?.status === 'failed' ? outcome.error : null,
      // An ended instance that stays ended keeps its result or error (an event it ignores).
      keepOutcome: !outcome && status !== 'running' && status !== 'paused',
      timeline: timeline.map((t) => ({ kind: t.kind, rule: t.rule ?? null, data: t.data })),
      calls: outcome ? [] : (result?.calls ?? []).map((c) => ({ rule: c.rule, function: c.function, pool: c.pool, input: c.input, key: c.key, priority: c.priority, retry: c.retry, timeoutMs: c.timeoutMs, fairnessKey: c.fairnessKey ?? null, batch: c.batch ?? null, canWaitMs: c.canWaitMs ?? null })),
      consumedEventIds: instance.pending.map((e) => e.id),
      reprocessed: instance.pending.filter((e) => e.kind === 'redeploy' && Number.isSafeInteger(e.payload.r)).map((e) => ({ id: e.payload.r!, fired: result?.firings ?? 0, failed: status === 'failed' })),
      ended: status !== 'running' && status !== 'paused',
    }, guard)
    if (typeof write === 'string') return write
    if (write.consumed !== instance.pending.length) return null
    return { instanceId: instance.id, status, revision: write.revision, firings: result?.firings ?? 0, invocations: write.invocations, eager: write.eager }
  }

  /**
   * Runs the workflow's `migrate` on an instance's facts of an older version, in the bundle's
   * isolate, and checks the answer as it checks `init`'s. Any failure (migrate threw, returned
   * facts the schema refuses, overran the sandbox's limits) is the instance's, with what to do.
   */
  async #migrate(bundle: LoadedBundle, instance: LockedInstance, to: number): Promise<{ facts: Record<string, Json> } | { failure: { message: string; details: Json } }> {
    const from = instance.facts_version
    const what = `migrate(facts, ${from}) of workflow ${instance.workflow}`
    const fail = (message: string, cause: Json): { failure: { message: string; details: Json } } => ({
      failure: {
        message: `${message.startsWith(what) ? '' : `${what}: `}${message}. The instance keeps its facts of version ${from} and fails; the workflow's other instances go on. Fix migrate for version ${from} (and deploy), then start this work again`,
        details: { code: 'PRX_MIGRATION_FAILED', fromVersion: from, toVersion: to, cause },
      },
    })
    try {
      const answer = await this.#run(bundle, 'migrate', { workflow: instance.workflow, facts: instance.facts, fromVersion: from, now: Date.now(), seed: seedOf(`migrate:${instance.id}:${from}`) }, what)
      if (!answer.ok) return fail(answer.error.message, { code: answer.error.code, ...(answer.error.details === undefined ? {} : { details: answer.error.details as Json }) })
      return { facts: checkFacts((answer as { facts?: unknown }).facts, this.bundles.limits) }
    } catch (error) {
      if (error instanceof PraxisError || error instanceof CheckFailure) return fail(error.message, { code: error.code })
      throw error
    }
  }

  async #pendingInvocations(client: Queryable, instance: LockedInstance): Promise<InvocationRow[]> {
    const ids = instance.pending.map((e: PendingEvent) => e.payload.invocationId).filter((id): id is string => Boolean(id))
    return ids.length === 0 ? [] : [...(await getInvocations(client, instance.tenant_id, ids)).values()]
  }
}

/** Largest `details` of a rule-code failure passed on in an HTTP answer (as JSON text). */
const MAX_DETAILS_CHARS = 16 * 1024

/** The codes a failure of `init` answers with itself; any other (rule code's own) answers PRX_BUNDLE_INVALID with it in details. */
const START_CODES = new Set<ErrorCode>(['PRX_INPUT_INVALID', 'PRX_RULE_TIMEOUT', 'PRX_RULE_MEMORY', 'PRX_RULE_THREW', 'PRX_LIMIT_FACTS'])

/** The API error of a start whose `init` failed with `code` (a string rule code may have chosen). */
function startError(code: string, message: string, details?: unknown): PraxisError {
  const known = START_CODES.has(code as ErrorCode) ? code as ErrorCode : 'PRX_BUNDLE_INVALID'
  return new PraxisError(known, message, { details: details ?? { code } })
}

/** A 32-bit seed for rule code's Math.random, from a text naming the evaluation. */
function seedOf(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32LE(0)
}

/** The invocation row as it will be once `result` is recorded (built from the job, no read). */
function finishedRow(job: InvocationJob, result: InvocationResult): InvocationRow {
  return {
    ...job,
    status: result.status,
    attempts: result.attempts,
    output: result.status === 'succeeded' ? result.output : null,
    failure: result.status === 'failed' ? (result.failure as unknown as Json) : null,
  }
}

/** The reaction or error section an invocation's result runs, or the instance failure it causes. */
function invocationHandler(bundle: LoadedBundle, workflowName: string, inv: InvocationRow): HandlerRun | { fail: { message: string; details: Json }; run: HandlerRun } {
  const rule = bundle.workflows.get(workflowName)?.byName.get(inv.rule)
  const call = { id: inv.id, input: inv.input, key: inv.call_key, attempts: inv.attempts }
  if (inv.status === 'succeeded') {
    const timeline = { kind: 'invocation.succeeded', rule: inv.rule, data: { invocationId: inv.id, function: inv.function, attempts: inv.attempts, output: inv.output } }
    return { target: { rule: inv.rule, section: 'reaction' }, argument: inv.output, call, timeline, ...(rule?.hasReaction ? {} : { skip: true }) }
  }
  const failure = inv.failure as { kind: string; message: string } | null
  const run: HandlerRun = { target: { rule: inv.rule, section: 'error' }, argument: inv.failure, call, timeline: { kind: 'invocation.failed', rule: inv.rule, data: { invocationId: inv.id, function: inv.function, failure: inv.failure } } }
  if (rule?.hasError) return run
  return {
    run,
    fail: {
      message: `function ${inv.function} failed for good (${failure?.kind ?? 'failed'}: ${failure?.message ?? 'no message'}) and rule ${inv.rule} has no error section to recover`,
      details: { code: 'PRX_FUNCTION_FAILED', invocationId: inv.id, function: inv.function, rule: inv.rule, failure: inv.failure },
    },
  }
}
