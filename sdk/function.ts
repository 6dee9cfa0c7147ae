import type { z } from 'zod'
import { DefinitionError } from './errors.js'

/** How a failing function is retried. Defaults: 3 attempts, exponential backoff from 200 ms, capped at 30 s. */
export interface RetryPolicy {
  /** Total attempts including the first. Default 3. */
  attempts?: number
  /** `exponential` doubles the delay each attempt (with jitter); `fixed` keeps it. Default `exponential`. */
  backoff?: 'exponential' | 'fixed'
  /** Delay before the second attempt. Default 200 ms. */
  initialDelayMs?: number
  /** Upper bound of any delay. Default 30,000 ms. */
  maxDelayMs?: number
}

/**
 * What rules know of a function: its name, schemas and how it runs, but not its code. Rules pass a
 * reference to `ctx.call`, so the rules bundle never needs the function's implementation.
 */
export interface FunctionRef<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  readonly kind: 'praxis.function'
  readonly name: string
  readonly input: I
  readonly output: O
  readonly retry: Required<RetryPolicy>
  readonly timeoutMs: number
  readonly pool: string
  /**
   * The service that defines it: set by generated stubs, and by a worker when it loads a service.
   * It qualifies the pool (`video-encoding:encoders`), so two services' pools never share jobs.
   */
  readonly service?: string
}

/** The queue a function's invocations go to: its pool, qualified by its service when known. */
export function qualifiedPool(fn: Pick<FunctionRef, 'pool' | 'service'>): string {
  return fn.service ? `${fn.service}:${fn.pool}` : fn.pool
}

/** What a handler receives besides its input. */
export interface FunctionContext {
  /** Aborted when the invocation times out; pass it to I/O that accepts one. */
  readonly signal: AbortSignal
  /** 1 for the first attempt. */
  readonly attempt: number
  readonly invocationId: string
}

/** What a batch handler receives besides its inputs: one entry per input, in the same order. */
export interface BatchContext {
  /** Aborted when the batch times out (the function's `timeoutMs`, for the whole batch). */
  readonly signal: AbortSignal
  /** Each item's attempt (1 for its first) and invocation id. */
  readonly items: readonly { readonly attempt: number; readonly invocationId: string }[]
}

/**
 * Runs a micro-batch (`ctx.callEach(fn, inputs, { batchSize })`) at once: gets every item's input
 * and returns one entry per input, in the same order: the item's output, or an Error for an item
 * that failed (retried by the policy, unless its `code` is `PRX_NON_RETRYABLE`). Throwing fails
 * every item of the batch; so does returning a different number of entries.
 */
export type BatchHandler<I extends z.ZodType, O extends z.ZodType> =
  (inputs: z.output<I>[], context: BatchContext) => Promise<readonly (z.input<O> | Error)[]> | readonly (z.input<O> | Error)[]

/** A function with its implementation: what a worker pool runs. */
export interface FunctionDefinition<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType>
  extends FunctionRef<I, O> {
  readonly handler: (input: z.output<I>, context: FunctionContext) => Promise<z.input<O>> | z.input<O>
  /** Runs a whole micro-batch at once; without it, `handler` runs once per item of a batch. */
  readonly batchHandler?: BatchHandler<I, O>
}

export interface FunctionOptions<I extends z.ZodType, O extends z.ZodType> {
  /** Unique in the service; letters, digits, `_`, `-`, `.`. */
  name: string
  input: I
  output: O
  handler: (input: z.output<I>, context: FunctionContext) => Promise<z.input<O>> | z.input<O>
  /**
   * Runs a whole micro-batch at once (a bulk insert, a batched API call): see `BatchHandler`.
   * Optional; `handler` still runs single calls and retried items.
   */
  batchHandler?: BatchHandler<I, O>
  retry?: RetryPolicy
  /** Per attempt. Default 60,000 ms. */
  timeoutMs?: number
  /** The worker pool that runs it. Default `default`. */
  pool?: string
}

const NAME = /^[A-Za-z][\w.-]{0,99}$/

/**
 * Defines a function (Cosmos "Stratum"): typed input and output, a handler that does the real
 * work (I/O allowed), a retry policy, a timeout and the pool that runs it.
 * @example
 * export const encodeChunk = defineFunction({
 *   name: 'encodeChunk', pool: 'encoders', timeoutMs: 60_000,
 *   retry: { attempts: 3, backoff: 'exponential', initialDelayMs: 200 },
 *   input: z.object({ source: z.string(), chunk: z.number().int() }),
 *   output: z.object({ uri: z.string() }),
 *   handler: async ({ source, chunk }) => ({ uri: `${source}#${chunk}` }),
 * })
 */
export function defineFunction<I extends z.ZodType, O extends z.ZodType>(
  options: FunctionOptions<I, O>,
): FunctionDefinition<I, O> {
  if (!NAME.test(options.name)) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function name ${JSON.stringify(options.name)} is invalid: use letters, digits, "_", "-" or "." and start with a letter`)
  }
  if (typeof options.handler !== 'function') {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${options.name} has no handler`)
  }
  if (options.batchHandler !== undefined && typeof options.batchHandler !== 'function') {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${options.name}: batchHandler must be a function`)
  }
  const retry = resolveRetry(options.name, options.retry)
  const timeoutMs = options.timeoutMs ?? 60_000
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${options.name}: timeoutMs must be a positive integer, got ${timeoutMs}`)
  }
  const pool = options.pool ?? 'default'
  if (!NAME.test(pool)) throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${options.name}: pool name ${JSON.stringify(pool)} is invalid`)
  return Object.freeze({
    kind: 'praxis.function' as const,
    name: options.name,
    input: options.input,
    output: options.output,
    handler: options.handler,
    ...(options.batchHandler ? { batchHandler: options.batchHandler } : {}),
    retry,
    timeoutMs,
    pool,
  })
}

function resolveRetry(name: string, retry: RetryPolicy | undefined): Required<RetryPolicy> {
  const resolved = {
    attempts: retry?.attempts ?? 3,
    backoff: retry?.backoff ?? 'exponential',
    initialDelayMs: retry?.initialDelayMs ?? 200,
    maxDelayMs: retry?.maxDelayMs ?? 30_000,
  } as const
  if (!Number.isInteger(resolved.attempts) || resolved.attempts < 1 || resolved.attempts > 100) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${name}: retry.attempts must be an integer from 1 to 100, got ${resolved.attempts}`)
  }
  if (resolved.initialDelayMs < 0 || resolved.maxDelayMs < resolved.initialDelayMs) {
    throw new DefinitionError('PRX_DEFINITION_INVALID', `function ${name}: retry delays must satisfy 0 <= initialDelayMs <= maxDelayMs`)
  }
  return resolved
}

/** True for a value made by `defineFunction` (checked by shape: it may come from another realm). */
export function isFunctionRef(value: unknown): value is FunctionRef {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'praxis.function'
}
