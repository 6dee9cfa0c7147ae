/**
 * Every error the platform reports, with a stable code, an HTTP status and `details`. Codes are
 * documented in docs/errors.md (a test checks) and never reused.
 */
export const ERRORS = {
  PRX_BAD_REQUEST: { status: 400, what: 'the request body, query or parameters are invalid' },
  PRX_INPUT_INVALID: { status: 400, what: 'a workflow input or signal payload does not match its schema' },
  PRX_UNAUTHORIZED: { status: 401, what: 'no API key, or an unknown or revoked one' },
  PRX_BODY_TOO_LARGE: { status: 413, what: 'the request body is larger than the limit' },
  PRX_URL_TOO_LONG: { status: 414, what: 'the URL, or one of its path parameters, is longer than the limit' },
  PRX_HEADERS_TOO_LARGE: { status: 431, what: 'the request headers are larger than the limit' },
  PRX_NOT_FOUND: { status: 404, what: 'no such route' },
  PRX_INSTANCE_NOT_FOUND: { status: 404, what: 'no instance with this id in your tenant' },
  PRX_SERVICE_NOT_FOUND: { status: 404, what: 'no deployed service with this name in your tenant' },
  PRX_WORKFLOW_NOT_FOUND: { status: 404, what: 'no deployed workflow with this name in your tenant' },
  PRX_RUN_NOT_FOUND: { status: 404, what: 'no reprocessing run (or bundle version) with this id for the service in your tenant' },
  PRX_WORKFLOW_AMBIGUOUS: { status: 409, what: 'the bare workflow name exists in two services; use service.workflow' },
  PRX_SIGNAL_UNKNOWN: { status: 400, what: 'the workflow has no signal of this name' },
  PRX_TENANT_EXISTS: { status: 409, what: 'a tenant with this id exists already' },
  PRX_TENANT_NOT_FOUND: { status: 404, what: 'no tenant with this id (admin CLI)' },
  PRX_KEY_NOT_FOUND: { status: 404, what: 'no API key with this id (admin CLI)' },
  PRX_INSTANCE_ENDED: { status: 409, what: 'the instance has completed, failed or been cancelled' },
  PRX_BUNDLE_INVALID: { status: 400, what: 'a deployed bundle does not load or describe itself correctly' },
  PRX_FACTS_VERSION_LOWERED: { status: 409, what: "a deploy (or rollback) would lower a workflow's facts version below the active one's" },
  PRX_BUNDLE_BUILD_FAILED: { status: 400, what: 'the service source could not be bundled' },
  PRX_FUNCTION_UNKNOWN: { status: 422, what: 'a rule called a function that no service of this tenant deployed (or a worker was asked to run one it does not have)' },
  PRX_RULE_TIMEOUT: { status: 422, what: 'rule code (an evaluation, init or a signal check) ran longer than PRAXIS_RULE_TIMEOUT_MS' },
  PRX_RULE_MEMORY: { status: 422, what: "rule code used more than its isolate's PRAXIS_RULE_MEMORY_MB" },
  PRX_RULE_THREW: { status: 422, what: 'rule code threw, or broke the sandbox protocol' },
  PRX_LIMIT_CALLS: { status: 422, what: 'one evaluation made more calls than PRAXIS_MAX_CALLS' },
  PRX_LIMIT_FACTS: { status: 422, what: 'facts grew past PRAXIS_MAX_FACTS_BYTES or nest deeper than PRAXIS_MAX_DEPTH' },
  PRX_LIMIT_INPUT: { status: 422, what: "a call's input is larger than PRAXIS_MAX_INPUT_BYTES or nests deeper than PRAXIS_MAX_DEPTH" },
  PRX_LIMIT_PRIORITY: { status: 422, what: 'a call asked for a priority outside -PRAXIS_MAX_PRIORITY..PRAXIS_MAX_PRIORITY' },
  PRX_LIMIT_RETRY: { status: 422, what: "a function's retry policy is outside the platform's limits (attempts, delays)" },
  PRX_LIMIT_TIMEOUT: { status: 422, what: "a function's timeout is longer than PRAXIS_MAX_FUNCTION_TIMEOUT_MS" },
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
