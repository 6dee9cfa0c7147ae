/**
 * The `ctx` that rule code records commands on. Rule code does no I/O: it returns nothing and the
 * platform applies the commands after the section returns, in order.
 */
import type { z } from 'zod'
import { DefinitionError } from './errors.js'
import { qualifiedPool, type FunctionRef } from './function.js'
import { CHILD_POOL, type WorkflowRef } from './stub.js'
import type { Json } from './match.js'
import type { FactsPatch, PathValue, Paths } from './paths.js'

/** Options of one call. */
export interface CallOptions {
  /** Higher runs first among waiting invocations. Default 0. */
  priority?: number
  /** Deduplicates calls of one instance: a second call with the same key is not made again. */
  key?: string
  /**
   * Shares the queue fairly between the values of this key (a customer, an account) inside the
   * service: calls with different keys interleave, so one key's flood of calls does not make the
   * others wait behind it. Without it, the service's calls share one place in the tenant's queue
   * (services interleave with each other). At most 200 characters.
   */
  fairnessKey?: string
  /**
   * Deferred capacity: the call may wait up to this long (ms) for idle capacity. Its invocation
   * runs when a worker of its pool has nothing else to do, or, at the latest, is raised to its own
   * priority shortly before the deadline (by a tenth of the wait, at least a second, at most a
   * minute). For work that must happen but not now: backfills, re-indexing, reports. At most 7 days.
   */
  canWaitMs?: number
}

/** Options of `ctx.callEach`. */
export interface CallEachOptions extends Omit<CallOptions, 'key'> {
  /** One deduplication key per input (see `CallOptions.key`). */
  keys?: readonly string[]
  /**
   * Micro-batches: queue the invocations in jobs of up to this many (at most 1000), so a large
   * fan-out costs a job and a step per batch rather than per item. A worker runs a batch in one
   * of its slots: the function's `batchHandler` gets the whole batch, or without one its `handler`
   * runs once per item, one after another. Each item is still its own invocation: its own result,
   * reaction or error section (exactly once), retries (a retried item runs alone) and timeline.
   */
  batchSize?: number
}

/** Largest `batchSize` of `ctx.callEach`. */
export const MAX_BATCH_SIZE = 1000
/** Longest `canWaitMs` of a call: 7 days. */
export const MAX_CAN_WAIT_MS = 7 * 24 * 3600 * 1000

/** What a rule can call: a function (stub or definition) or, through `ctx.start`, a workflow. */
export interface Callable { readonly name: string; readonly input: z.ZodType; readonly output: z.ZodType }

declare const calledFunction: unique symbol
/** What `ctx.call` and `ctx.start` return. Returning it from an action types that rule's reaction and error. */
export interface CallHandle<Fn extends Callable> {
  readonly function: string
  readonly count: number
  readonly [calledFunction]?: Fn
}

/** Which invocation a reaction or error section is about. */
export interface CallInfo<I> {
  readonly id: string
  readonly input: I
  readonly key: string | null
  readonly attempts: number
}

/** Why an invocation failed for good. */
export interface Failure {
  readonly kind: 'retryable' | 'fatal' | 'timeout' | 'lost' | 'cancelled'
  readonly message: string
  readonly attempts: number
}

/** The commands rule code can record. */
export interface RuleContext<F> {
  /** Records fact changes: keys are fact paths (`stage`, `chunks.3`), values their new values. */
  set(patch: FactsPatch<F>): void
  /** Records one fact change at a computed path: `ctx.setPath(`chunks.${n}`, uri)`. */
  setPath<P extends Paths<F>>(path: P, value: PathValue<F, P>): void
  /** Calls a function once; its reaction runs with the output. */
  call<Fn extends FunctionRef>(fn: Fn, input: z.input<Fn['input']>, options?: CallOptions): CallHandle<Fn>
  /** Fans out: one invocation per input, all enqueued in one commit. */
  callEach<Fn extends FunctionRef>(fn: Fn, inputs: readonly z.input<Fn['input']>[], options?: CallEachOptions): CallHandle<Fn>
  /**
   * Starts a child workflow (another service's, through its generated reference). Its reaction runs
   * with the child's result when the child completes; its error section runs when the child fails.
   * Starting twice from one instance with the same `key` starts one child.
   */
  start<W extends WorkflowRef>(workflow: W, input: z.input<W['input']>, options?: CallOptions): CallHandle<W>
  /** Ends the instance as completed, with an optional result. */
  complete(result?: Json): void
  /** Ends the instance as failed. */
  fail(message: string, details?: Json): void
}

/** A recorded command, as it crosses the sandbox boundary (plain JSON). */
export type Command =
  | { op: 'set'; patch: Record<string, Json> }
  | { op: 'call'; function: string; pool: string; retry: FunctionRef['retry']; timeoutMs: number; input: Json; key: string | null; priority: number; fairnessKey?: string | null; batchSize?: number | null; canWaitMs?: number | null }
  | { op: 'complete'; result: Json }
  | { op: 'fail'; message: string; details: Json }

/** A `RuleContext` that records into `commands`; `where` names the rule section in errors. */
export function recordingContext<F>(commands: Command[], where: string): RuleContext<F> {
  const callOne = (fn: FunctionRef, input: unknown, priority: number, key: string | null, options: CallEachOptions | undefined): void => {
    const parsed = fn.input.safeParse(input)
    if (!parsed.success) {
      throw new DefinitionError('PRX_CALL_INPUT_INVALID', `${where} calls ${fn.name} with an invalid input: ${formatIssues(parsed.error.issues)}`, parsed.error.issues)
    }
    commands.push({
      op: 'call', function: fn.name, pool: qualifiedPool(fn), retry: fn.retry, timeoutMs: fn.timeoutMs, input: toJson(parsed.data), key, priority,
      fairnessKey: options?.fairnessKey ?? null, batchSize: options?.batchSize ?? null, canWaitMs: checkWait(where, fn.name, options?.canWaitMs),
    })
  }
  return {
    set(patch) {
      commands.push({ op: 'set', patch: toJson(patch) as Record<string, Json> })
    },
    setPath(path, value) {
      commands.push({ op: 'set', patch: { [path]: toJson(value) } })
    },
    call(fn, input, options) {
      callOne(fn, input, options?.priority ?? 0, options?.key ?? null, options && { fairnessKey: options.fairnessKey, canWaitMs: options.canWaitMs })
      return { function: fn.name, count: 1 }
    },
    callEach(fn, inputs, options) {
      if (options?.keys && options.keys.length !== inputs.length) {
        throw new DefinitionError('PRX_CALL_INPUT_INVALID', `${where} calls ${fn.name} for ${inputs.length} inputs with ${options.keys.length} keys: give one key per input`)
      }
      const size = options?.batchSize
      if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > MAX_BATCH_SIZE)) {
        throw new DefinitionError('PRX_CALL_INPUT_INVALID', `${where} calls ${fn.name} with batchSize ${String(size)}: a batch size is a whole number from 1 to ${MAX_BATCH_SIZE}`)
      }
      inputs.forEach((input, i) => callOne(fn, input, options?.priority ?? 0, options?.keys?.[i] ?? null, options))
      return { function: fn.name, count: inputs.length }
    },
    start(workflow, input, options) {
      const parsed = workflow.input.safeParse(input)
      if (!parsed.success) {
        throw new DefinitionError('PRX_CALL_INPUT_INVALID', `${where} starts workflow ${workflow.service}.${workflow.name} with an invalid input: ${formatIssues(parsed.error.issues)}`, parsed.error.issues)
      }
      commands.push({
        op: 'call', function: `${workflow.service}.${workflow.name}`, pool: CHILD_POOL, retry: CHILD_RETRY, timeoutMs: CHILD_TIMEOUT_MS,
        input: toJson(parsed.data), key: options?.key ?? null, priority: options?.priority ?? 0, fairnessKey: options?.fairnessKey ?? null,
        canWaitMs: checkWait(where, `${workflow.service}.${workflow.name}`, options?.canWaitMs),
      })
      return { function: `${workflow.service}.${workflow.name}`, count: 1 }
    },
    complete(result) {
      commands.push({ op: 'complete', result: result === undefined ? null : toJson(result) })
    },
    fail(message, details) {
      commands.push({ op: 'fail', message: String(message), details: details === undefined ? null : toJson(details) })
    },
  }
}

/** A call's `canWaitMs`, checked (null when not given). */
function checkWait(where: string, name: string, ms: number | undefined): number | null {
  if (ms === undefined) return null
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_CAN_WAIT_MS) {
    throw new DefinitionError('PRX_CALL_INPUT_INVALID', `${where} calls ${name} with canWaitMs ${String(ms)}: a wait is a whole number of milliseconds from 1 to ${MAX_CAN_WAIT_MS} (7 days)`)
  }
  return ms
}

// A child start is one attempt (starting is idempotent); the child's own rules retry its work.
const CHILD_RETRY = { attempts: 1, backoff: 'fixed', initialDelayMs: 0, maxDelayMs: 0 } as const
const CHILD_TIMEOUT_MS = 60_000

/** Formats zod issues as `path: message; …`. */
export function formatIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`).join('; ')
}

function toJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value ?? null)) as Json
}
