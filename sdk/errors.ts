/**
 * Errors the SDK raises at definition time and the error classes users throw from function
 * handlers. Checked across the sandbox by `code`, never by `instanceof`.
 */

/** Stable codes of the errors the SDK raises. Documented in docs/errors.md; never reused. */
export type SdkErrorCode =
  | 'PRX_DEFINITION_INVALID'
  | 'PRX_RULE_DUPLICATE'
  | 'PRX_RULE_INCOMPLETE'
  | 'PRX_MATCH_INVALID'
  | 'PRX_CALL_INPUT_INVALID'
  | 'PRX_FACTS_INVALID'
  | 'PRX_INPUT_INVALID'
  | 'PRX_RESULT_INVALID'

/** A mistake in a service definition or in what rule code asked for. */
export class DefinitionError extends Error {
  readonly code: SdkErrorCode
  readonly details: unknown
  constructor(code: SdkErrorCode, message: string, details?: unknown) {
    super(message)
    this.name = 'DefinitionError'
    this.code = code
    this.details = details
  }
}

/**
 * Throw from a function handler when retrying cannot help (bad data, a refused request): the
 * invocation fails at once with kind `fatal`, and the calling rule's `error` section runs.
 * @example
 * if (!exists(source)) throw new NonRetryableError(`source ${source} does not exist`)
 */
export class NonRetryableError extends Error {
  readonly code = 'PRX_NON_RETRYABLE'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NonRetryableError'
  }
}
