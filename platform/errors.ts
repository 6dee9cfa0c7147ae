/**
 * Every error the platform reports, with a stable code, an HTTP status and `details`. Codes are
 * documented in docs/errors.md (a test checks) and never reused.
 */
export const ERRORS = {
  PRX_BAD_REQUEST: { status: 400, what: 'the request body, query or parameters are invalid' },
  PRX_INPUT_INVALID: { status: 400, what: 'a workflow input or signal payload does not match its schema' },
  PRX_UNAUTHORIZED: { status: 401, what: 'no or an unknown API key' },
  PRX_NOT_FOUND: { status: 404, what: 'no such route' },
  PRX_INSTANCE_NOT_FOUND: { status: 404, what: 'no instance with this id in your tenant' },
  PRX_SERVICE_NOT_FOUND: { status: 404, what: 'no deployed service with this name in your tenant' },
  PRX_WORKFLOW_NOT_FOUND: { status: 404, what: 'no deployed workflow with this name in your tenant' },
  PRX_WORKFLOW_AMBIGUOUS: { status: 409, what: 'the bare workflow name exists in two services; use service.workflow' },
  PRX_SIGNAL_UNKNOWN: { status: 400, what: 'the workflow has no signal of this name' },
  PRX_INSTANCE_ENDED: { status: 409, what: 'the instance has completed, failed or been cancelled' },
  PRX_BUNDLE_INVALID: { status: 400, what: 'a deployed bundle does not load or describe itself correctly' },
  PRX_BUNDLE_BUILD_FAILED: { status: 400, what: 'the service source could not be bundled' },
  PRX_FUNCTION_UNKNOWN: { status: 500, what: 'a worker was asked to run a function it does not have' },
  PRX_DATABASE_UNAVAILABLE: { status: 503, what: 'PostgreSQL could not be reached or started' },
  PRX_INTERNAL: { status: 500, what: 'an unexpected failure; the log has the stack' },
} as const

export type ErrorCode = keyof typeof ERRORS

/** An error with a stable code, for the API and the logs. Wrap causes with `cause`. */
export class PraxisError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: unknown
  constructor(code: ErrorCode, message: string, options?: { details?: unknown; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'PraxisError'
    this.code = code
    this.status = ERRORS[code].status
    this.details = options?.details
  }
}
