/** Codegen's errors: each names the file and line of the source at fault, and what to do. */

export type CodegenErrorCode =
  | 'PRX_CODEGEN_NOT_STATIC'
  | 'PRX_CODEGEN_UNSUPPORTED_SCHEMA'
  | 'PRX_CODEGEN_DUPLICATE'
  | 'PRX_CODEGEN_INVALID'
  | 'PRX_CODEGEN_NO_SERVICE'
  | 'PRX_CODEGEN_MANIFEST_INVALID'
  | 'PRX_CODEGEN_STALE'
  | 'PRX_CODEGEN_FACT_PATH'

export class CodegenError extends Error {
  constructor(readonly code: CodegenErrorCode, message: string, readonly location?: string) {
    super(location ? `${location}: ${message}` : message)
    this.name = 'CodegenError'
  }
}

/** A fact path of a rule that is not in its workflow's facts schema, where the source has it. */
export interface FactPathIssue {
  /** From the current folder. */
  file: string
  line: number
  column: number
  workflow: string
  rule: string
  path: string
  message: string
}

/** `file:line:col: message`, as codegen and `praxis check` print a fact-path problem. */
export function formatFactPathIssue(issue: FactPathIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.message}`
}

/** Rules that match on (or set) fact paths not in their facts schema: one line per path, each at its place. */
export class FactPathError extends CodegenError {
  constructor(readonly issues: readonly FactPathIssue[]) {
    super('PRX_CODEGEN_FACT_PATH', issues.map(formatFactPathIssue).join('\n'))
  }
}
