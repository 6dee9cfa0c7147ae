/**
 * Runs one invocation: validate the input, run the handler under its timeout, validate the
 * output, then record the result through the fused step, or schedule the next attempt.
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

/**
 * `job` is the graphile-worker job running it (the fused step completes it while it still holds
 * it). `eager` is asked, when the result is written, whether the step may lock the next
 * invocation to this worker: `next` is then that job, to run at once.
 *
 * A job handed out more than once had runs that never finished (its worker died or stopped, or the
 * job failed outside the function): each counts as an attempt (`invocation.lost` in the timeline),
 * and when they used up the retry policy the invocation fails for good as `lost`, without running.
 */
export async function runInvocation(deps: { pool: pg.Pool; evaluator: Evaluator; log: Logger }, fn: FunctionDefinition, invocation: InvocationJob, job?: RunningJob, eager?: () => WriteGuard['eager']): Promise<{ outcome: InvokeOutcome; next: EagerJob | null }> {
  const lostRuns = Math.max(0, (job?.attempts ?? 1) - 1)
  const attempt = invocation.attempts + lostRuns + 1
  // The instance as the job left it, or read while the function runs: the fused step then
  // usually needs one write.
  const snapshot = invocation.snapshot
    ? Promise.resolve({ ...invocation.snapshot, tenant_id: invocation.tenant_id, id: invocation.instance_id, pending: [] })
    : deps.evaluator.snapshot(invocation)
  const record = async (result: InvocationResult): Promise<{ outcome: InvokeOutcome; next: EagerJob | null }> => {
    const recorded = await deps.evaluator.recordResult(invocation, result, snapshot, job, eager?.())
    return { outcome: recorded === null ? 'duplicate' : result.status, next: (typeof recorded === 'object' && recorded?.eager) || null }
  }
  if (lostRuns > 0) {
    const lost = Array.from({ length: lostRuns }, (_, i) => invocation.attempts + 1 + i)
    const reason = 'the attempt never finished: its worker stopped or crashed while running it, or its job failed before the function ran'
    deps.log.warn({ invocationId: invocation.id, function: fn.name, lost }, 'attempts of this invocation were lost; counted as attempts')
    await recordLostAttempts(deps.pool, invocation.tenant_id, invocation.id, lost, reason)
    if (attempt > invocation.retry.attempts) {
      return record({ status: 'failed', failure: { kind: 'lost', message: `${fn.name} was attempted ${attempt - 1} times and ${reason}`, attempts: attempt - 1 }, attempts: attempt - 1 })
    }
  }
  const outcome = await execute(fn, invocation, attempt)
  if (outcome.status === 'succeeded') return record({ status: 'succeeded', output: outcome.output, attempts: attempt })
  const failure = outcome.failure
  const retryable = failure.kind === 'retryable' || failure.kind === 'timeout'
  if (retryable && attempt < invocation.retry.attempts) {
    const delay = backoffDelay(invocation.retry, attempt)
    deps.log.info({ invocationId: invocation.id, function: fn.name, attempt, delayMs: delay, error: failure.message }, 'invocation attempt failed; retrying')
    const scheduled = await scheduleRetry(deps.pool, invocation, attempt, failure as unknown as Json, delay)
    // Complete this job: the due job adds the next attempt's.
    if (scheduled && job) await completeJob(deps.pool, job.id, job.lockedBy)
    if (scheduled) wakeWhenDue(deps.pool, delay)
    return { outcome: scheduled ? 'retry-scheduled' : 'duplicate', next: null }
  }
  deps.log.warn({ invocationId: invocation.id, function: fn.name, attempt, kind: failure.kind, error: failure.message }, 'invocation failed for good')
  return record({ status: 'failed', failure, attempts: attempt })
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

async function execute(fn: FunctionDefinition, invocation: InvocationJob, attempt: number): Promise<{ status: 'succeeded'; output: Json } | { status: 'failed'; failure: Failure }> {
  const fail = (kind: Failure['kind'], message: string) => ({ status: 'failed' as const, failure: { kind, message, attempts: attempt } })
  const input = fn.input.safeParse(invocation.input)
  if (!input.success) return fail('fatal', `input does not match the schema of ${fn.name}: ${formatIssues(input.error.issues)}`)
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // The standard reason (what AbortSignal.timeout gives): fetch and friends pass it on as is.
      const error = new DOMException(`${fn.name} did not finish within ${invocation.timeout_ms} ms`, 'TimeoutError')
      controller.abort(error)
      reject(error)
    }, invocation.timeout_ms)
  })
  try {
    const raw = await Promise.race([Promise.resolve().then(() => fn.handler(input.data, { signal: controller.signal, attempt, invocationId: invocation.id })), timeout])
    const output = fn.output.safeParse(raw)
    if (!output.success) return fail('fatal', `${fn.name} returned an output that does not match its schema: ${formatIssues(output.error.issues)}`)
    return { status: 'succeeded', output: JSON.parse(JSON.stringify(output.data ?? null)) as Json }
  } catch (error) {
    // Whatever the handler threw once its time was up (the reason, or its own AbortError) is a timeout.
    if (controller.signal.aborted) return fail('timeout', (controller.signal.reason as Error).message)
    const e = error as { code?: unknown; message?: unknown }
    return fail(e?.code === 'PRX_NON_RETRYABLE' ? 'fatal' : 'retryable', String(e?.message ?? error))
  } finally {
    clearTimeout(timer)
  }
}

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
