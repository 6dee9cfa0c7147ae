/**
 * Runs a job's invocations (one, or a micro-batch's): validate each input, run the handler (or
 * the batch handler) under its timeout, validate each output, then record the final results
 * through one fused step, and schedule the next attempt of each that failed with attempts left.
 */
import type { Logger } from 'pino'
import type { FunctionDefinition, Json } from '../../sdk/index.js'
import { formatIssues } from '../../sdk/context.js'
import type { Evaluator, InvocationResult } from '../engine/index.js'
import { PraxisError } from '../errors.js'
import { backoffDelay, completeJob, scheduleRetry, wakeWorkers, type EagerJob, type WriteGuard } from '../queue/index.js'
import { recordLostAttempts, resolveWorkflow, type InvocationJob } from '../store/index.js'
import type pg from 'pg'

type Failure = Extract<InvocationResult, { status: 'failed' }>['failure']

/** What became of one run of an invocation. */
export type InvokeOutcome = 'succeeded' | 'failed' | 'retry-scheduled' | 'duplicate'

/** The graphile-worker job running an invocation: its id, its lock, and how often it was handed out. */
export interface RunningJob { id: string; lockedBy: string; attempts: number }

/** Runs one invocation: `runInvocations` with one. */
export async function runInvocation(deps: { pool: pg.Pool; evaluator: Evaluator; log: Logger }, fn: FunctionDefinition, invocation: InvocationJob, job?: RunningJob, eager?: () => WriteGuard['eager']): Promise<{ outcome: InvokeOutcome; next: EagerJob | null }> {
  const { outcomes, next } = await runInvocations(deps, fn, [invocation], job, eager)
  return { outcome: outcomes[0]!, next }
}

/**
 * graphile-worker announces a job when it is added, not when a later `run_at` comes due: a retry
 * would wait for the next poll (up to a second; a 100 ms delay was seen as 0.2-1.15 s). Announce
 * its due job again when it is due, so the delay is the policy's. (If this process is gone by
 * then, the poll still finds it.)
 */
function wakeWhenDue(pool: pg.Pool, delayMs: number): void {
  setTimeout(() => void wakeWorkers(pool).catch(() => undefined), delayMs + 5).unref()
}

type Attempted = { status: 'succeeded'; output: Json } | { status: 'failed'; failure: Failure }

const failed = (kind: Failure['kind'], message: string, attempt: number): Attempted => ({ status: 'failed', failure: { kind, message, attempts: attempt } })

/** The failure class of what a handler threw: `PRX_NON_RETRYABLE` is fatal, anything else retryable. */
const thrown = (error: unknown, attempt: number): Attempted => {
  const e = error as { code?: unknown; message?: unknown }
  return failed(e?.code === 'PRX_NON_RETRYABLE' ? 'fatal' : 'retryable', String(e?.message ?? error), attempt)
}

/** An output checked against the function's schema, as stored (JSON). */
const checkedOutput = (fn: FunctionDefinition, raw: unknown, attempt: number): Attempted => {
  const output = fn.output.safeParse(raw)
  if (!output.success) return failed('fatal', `${fn.name} returned an output that does not match its schema: ${formatIssues(output.error.issues)}`, attempt)
  return { status: 'succeeded', output: JSON.parse(JSON.stringify(output.data ?? null)) as Json }
}

/**
 * Runs `work` under a timeout of `ms`: when it runs out, the signal aborts (with the standard
 * TimeoutError reason, which fetch and friends pass on as is) and the result is 'timeout', whatever
 * the handler does after.
 */
async function underTimeout<T>(ms: number, what: string, work: (signal: AbortSignal) => Promise<T> | T): Promise<{ ok: true; value: T } | { ok: false; timeout: string | null; error: unknown }> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new DOMException(`${what} did not finish within ${ms} ms`, 'TimeoutError')
      controller.abort(error)
      reject(error)
    }, ms)
  })
  try {
    return { ok: true, value: await Promise.race([Promise.resolve().then(() => work(controller.signal)), timeout]) }
  } catch (error) {
    // Whatever the handler threw once its time was up (the reason, or its own AbortError) is a timeout.
    return { ok: false, timeout: controller.signal.aborted ? (controller.signal.reason as Error).message : null, error }
  } finally {
    clearTimeout(timer)
  }
}

async function execute(fn: FunctionDefinition, invocation: InvocationJob, attempt: number): Promise<Attempted> {
  const input = fn.input.safeParse(invocation.input)
  if (!input.success) return failed('fatal', `input does not match the schema of ${fn.name}: ${formatIssues(input.error.issues)}`, attempt)
  const ran = await underTimeout(invocation.timeout_ms, fn.name, (signal) => fn.handler(input.data, { signal, attempt, invocationId: invocation.id }))
  if (ran.ok) return checkedOutput(fn, ran.value, attempt)
  return ran.timeout !== null ? failed('timeout', ran.timeout, attempt) : thrown(ran.error, attempt)
}

/**
 * Runs a micro-batch's items: the function's batch handler once, with every valid input (under
 * the function's timeout for the whole batch), or without one its handler per item, one after
 * another (the batch holds one of the worker's slots). One result per item, in order.
 */
async function executeBatch(fn: FunctionDefinition, items: readonly { invocation: InvocationJob; attempt: number }[]): Promise<Attempted[]> {
  // A single call (or a retried item) runs through `handler`, a batch through `batchHandler`.
  const batchHandler = items.length > 1 ? fn.batchHandler : undefined
  if (!batchHandler) {
    const results: Attempted[] = []
    for (const { invocation, attempt } of items) results.push(await execute(fn, invocation, attempt))
    return results
  }
  const results: Attempted[] = items.map(({ invocation, attempt }) => {
    const input = fn.input.safeParse(invocation.input)
    return input.success ? { status: 'succeeded', output: input.data as Json } : failed('fatal', `input does not match the schema of ${fn.name}: ${formatIssues(input.error.issues)}`, attempt)
  })
  // Inputs that passed their schema (parsed: `output` holds the parsed input until the handler answers).
  const valid = items.map((item, i) => ({ ...item, i })).filter(({ i }) => results[i]!.status === 'succeeded')
  if (valid.length === 0) return results
  const inputs = valid.map(({ i }) => (results[i] as { output: Json }).output)
  const what = `the batch handler of ${fn.name} (${valid.length} items)`
  const ran = await underTimeout(items[0]!.invocation.timeout_ms, what, (signal) =>
    batchHandler(inputs, { signal, items: valid.map(({ invocation, attempt }) => ({ attempt, invocationId: invocation.id })) }))
  valid.forEach(({ attempt, i }, n) => {
    if (!ran.ok) results[i] = ran.timeout !== null ? failed('timeout', ran.timeout, attempt) : thrown(ran.error, attempt)
    else if (!Array.isArray(ran.value) || ran.value.length !== valid.length) {
      results[i] = failed('fatal', `${what} returned ${Array.isArray(ran.value) ? `${ran.value.length} results` : 'something that is not an array'}: it must return one output (or Error) per input, in order`, attempt)
    } else {
      const entry: unknown = ran.value[n]
      results[i] = entry instanceof Error ? thrown(entry, attempt) : checkedOutput(fn, entry, attempt)
    }
  })
  return results
}

/**
 * Runs a job's invocations (one, or a micro-batch's) and records them: the final results
 * (outputs, and failures for good) in one fused step, so their reactions and error sections run in
 * one evaluation, each once; an invocation that failed with attempts left is retried alone (a due
 * job adds its own job when its delay is over, and this job is completed). A job handed out more
 * than once lost runs: each counts as an attempt of every invocation (`invocation.lost`), and one
 * whose lost runs used up its retry policy fails for good as `lost`, without running.
 * `job` is the graphile-worker job (the fused step completes it while it still holds it); `eager`
 * is asked, when the results are written, whether the step may lock the next invocation to this
 * worker: `next` is then that job, to run at once.
 */
export async function runInvocations(deps: { pool: pg.Pool; evaluator: Evaluator; log: Logger }, fn: FunctionDefinition, invocations: readonly InvocationJob[], job?: RunningJob, eager?: () => WriteGuard['eager']): Promise<{ outcomes: InvokeOutcome[]; next: EagerJob | null }> {
  const head = invocations[0]!
  const lostRuns = Math.max(0, (job?.attempts ?? 1) - 1)
  const snapshot = head.snapshot
    ? Promise.resolve({ ...head.snapshot, tenant_id: head.tenant_id, id: head.instance_id, pending: [] })
    : deps.evaluator.snapshot(head)
  const finals: { job: InvocationJob; result: InvocationResult }[] = []
  const live: { invocation: InvocationJob; attempt: number }[] = []
  for (const invocation of invocations) {
    const attempt = invocation.attempts + lostRuns + 1
    if (lostRuns > 0) {
      const lost = Array.from({ length: lostRuns }, (_, i) => invocation.attempts + 1 + i)
      deps.log.warn({ invocationId: invocation.id, function: fn.name, lost }, 'attempts of this invocation were lost; counted as attempts')
      await recordLostAttempts(deps.pool, invocation.tenant_id, invocation.id, lost, LOST_REASON)
      if (attempt > invocation.retry.attempts) {
        finals.push({ job: invocation, result: { status: 'failed', failure: { kind: 'lost', message: `${fn.name} was attempted ${attempt - 1} times and ${LOST_REASON}`, attempts: attempt - 1 }, attempts: attempt - 1 } })
        continue
      }
    }
    live.push({ invocation, attempt })
  }
  const attempted = await executeBatch(fn, live)
  const outcomes: InvokeOutcome[] = []
  let soonestRetry = Infinity
  for (const [n, { invocation, attempt }] of live.entries()) {
    const outcome = attempted[n]!
    if (outcome.status === 'succeeded') {
      finals.push({ job: invocation, result: { status: 'succeeded', output: outcome.output, attempts: attempt } })
      continue
    }
    const failure = outcome.failure
    if ((failure.kind === 'retryable' || failure.kind === 'timeout') && attempt < invocation.retry.attempts) {
      const delay = backoffDelay(invocation.retry, attempt)
      deps.log.info({ invocationId: invocation.id, function: fn.name, attempt, delayMs: delay, error: failure.message }, 'invocation attempt failed; retrying')
      const scheduled = await scheduleRetry(deps.pool, invocation, attempt, failure as unknown as Json, delay)
      outcomes.push(scheduled ? 'retry-scheduled' : 'duplicate')
      if (scheduled) soonestRetry = Math.min(soonestRetry, delay)
      continue
    }
    deps.log.warn({ invocationId: invocation.id, function: fn.name, attempt, kind: failure.kind, error: failure.message }, 'invocation failed for good')
    finals.push({ job: invocation, result: { status: 'failed', failure, attempts: attempt } })
  }
  if (Number.isFinite(soonestRetry)) wakeWhenDue(deps.pool, soonestRetry)
  if (finals.length === 0) {
    // Every invocation is retried: complete this job (their due jobs add the next attempts' jobs).
    if (job) await completeJob(deps.pool, job.id, job.lockedBy)
    return { outcomes, next: null }
  }
  const recorded = await deps.evaluator.recordResults(finals, snapshot, job, eager?.())
  for (const { result } of finals) outcomes.push(recorded === null ? 'duplicate' : result.status)
  return { outcomes, next: (typeof recorded === 'object' && recorded?.eager) || null }
}

const LOST_REASON = 'the attempt never finished: its worker stopped or crashed while running it, or its job failed before the function ran'

/**
 * Runs a child-workflow start (`ctx.start`): the invocation's function is `service.workflow`. The
 * child is started with the invocation as its idempotency key and parent link, so a repeated job
 * starts it once; the invocation stays pending until the child ends (see the write's parent_fin).
 * A child that cannot start (not deployed, invalid input) fails the invocation at once, fatally.
 */
export async function startChild(deps: { pool: pg.Pool; evaluator: Evaluator; log: Logger }, invocation: InvocationJob, job?: RunningJob, lastAttempt = false): Promise<'succeeded' | 'failed' | 'duplicate'> {
  const fail = async (message: string): Promise<'failed' | 'duplicate'> => {
    deps.log.warn({ invocationId: invocation.id, workflow: invocation.function, error: message }, 'child workflow could not start')
    const snapshot = deps.evaluator.snapshot(invocation)
    const recorded = await deps.evaluator.recordResult(invocation, { status: 'failed', failure: { kind: 'fatal', message, attempts: 1 }, attempts: 1 }, snapshot, job)
    return recorded === null ? 'duplicate' : 'failed'
  }
  const [target, ...others] = await resolveWorkflow(deps.pool, invocation.tenant_id, invocation.function)
  if (!target) return fail(`workflow ${invocation.function} is not deployed in this tenant: deploy its service, then the parent's rule can start it again`)
  if (others.length > 0) return fail(`workflow ${invocation.function} is ambiguous`)
  try {
    await deps.evaluator.start(invocation.tenant_id, target, invocation.input, `child:${invocation.id}`, { instanceId: invocation.instance_id, invocationId: invocation.id })
    return 'succeeded'
  } catch (error) {
    if (error instanceof PraxisError && (error.code === 'PRX_INPUT_INVALID' || error.code === 'PRX_BUNDLE_INVALID')) return fail(error.message)
    // Anything else may pass (the job is retried), but never leaves the parent waiting for ever.
    if (lastAttempt) return fail(`the child could not start: ${(error as Error).message}`)
    throw error
  }
}
