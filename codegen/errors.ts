/** Codegen's errors: each names the file and line of the source at fault, and what to do. */

export type CodegenErrorCode =
  | 'PRX_CODEGEN_NOT_STATIC'
  | 'PRX_CODEGEN_UNSUPPORTED_SCHEMA'
  | 'PRX_CODEGEN_DUPLICATE'
  | 'PRX_CODEGEN_INVALID'
  | 'PRX_CODEGEN_NO_SERVICE'
  | 'PRX_CODEGEN_MANIFEST_INVALID'
  | 'PRX_CODEGEN_STALE'

export class CodegenError extends Error {
  constructor(readonly code: CodegenErrorCode, message: string, readonly location?: string) {
    super(location ? `${location}: ${message}` : message)
    this.name = 'CodegenError'
  }
}
