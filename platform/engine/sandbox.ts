/**
 * The rule sandbox: where tenant code runs. One small interface, so the engine behind it can be
 * replaced (isolated-vm today; QuickJS compiled to WebAssembly is the fallback should isolated-vm
 * stop building on a Node version we support). Everything crosses it as JSON text, and nothing
 * that comes back is trusted: the host checks it (checks.ts).
 */

/**
 * One tenant bundle version: its isolate is keyed by `key` (tenant and code hash). Each time the
 * bundle is loaded into an isolate, `setup` receives its self-description (untrusted JSON text)
 * and returns what the engine in the isolate is given (the indexed workflows, as JSON); it throws
 * when the bundle is not acceptable.
 */
export interface SandboxCode { key: string; service: string; code: string; setup(description: string): string }

/** What the sandbox runs: one function of the engine in the bundle's isolate, JSON in and out. */
export type SandboxCall = 'init' | 'checkSignal' | 'migrate' | 'chain'

export interface RuleSandbox {
  /** Loads a bundle into its own isolate, unless it is loaded. */
  load(code: SandboxCode): Promise<void>
  /** Runs `fn` in the bundle's isolate (loading it again if it was evicted). */
  call(code: SandboxCode, fn: SandboxCall, request: string): Promise<string>
  /** Disposes of the isolate of `key` (once idle); the next call loads the bundle again. */
  forget(key: string): Promise<void>
  /** Disposes of every isolate. */
  close(): Promise<void>
}

export type SandboxErrorCode = 'PRX_RULE_TIMEOUT' | 'PRX_RULE_MEMORY' | 'PRX_RULE_THREW'

/** Rule code overran a limit or broke its isolate; the instance (or the deploy) it ran for is at fault. */
export class SandboxError extends Error {
  constructor(readonly code: SandboxErrorCode, message: string) {
    super(message)
  }
}

/** The sandbox's limits (platform/config.ts has their defaults and environment variables). */
export interface SandboxLimits {
  /** Heap cap of one isolate, MB. */
  memoryMb: number
  /** Time one evaluation (or init, or signal check) may take, ms. */
  evaluationMs: number
  /** Time loading a bundle (its top-level code and self-description) may take, ms. */
  loadMs: number
  /** Isolates kept loaded per process (least recently used are disposed of). */
  capacity: number
}
