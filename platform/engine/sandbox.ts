/**
 * The rule sandbox: a whole evaluation (forward chaining with the rule code it calls) runs on a
 * worker thread in one request, bounded in time. The host blocks on a shared flag (Atomics) until
 * the reply, as if the evaluation ran in its own thread: rule code is CPU work that holds the
 * instance lock, so there is nothing better to do meanwhile, and a blocking hand-off costs
 * ~40 µs here where a message through the event loop cost ~1 ms and `vm`'s per-call watchdog
 * ~0.1-0.4 ms per rule section. An evaluation that overruns (an endless loop in rule code)
 * terminates the thread; the next evaluation starts a new one.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads'
import type { LoadedBundle } from './bundle.js'
import type { ChainInput, ChainResult } from './chain.js'

/** Run `chain`, or (with `code` and no `input`) only load the bundle. */
export interface SandboxRequest { id: number; key: string; service: string; workflow: string; input?: ChainInput; code?: string }
export type SandboxReply = { id: number; result: ChainResult } | { id: number; missing: true } | { id: number; loaded: true } | { id: number; error: string }

/** Thrown when an evaluation ran past the limit; the instance it evaluated is at fault. */
export class RuleTimeoutError extends Error {
  readonly code = 'PRX_RULE_TIMEOUT'
}

// From TypeScript source the thread starts through a shim that registers tsx; built, it runs the .js.
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './sandbox-worker-tsx.mjs' : './sandbox-worker.js', import.meta.url)
/** Starting the thread and loading a bundle on it are not rule code: they get this long. */
const LOAD_MS = 30_000

interface Thread { worker: Worker; port: MessagePort; flag: Int32Array }

export class RuleSandbox {
  #thread: Thread | undefined
  #nextId = 1

  constructor(private readonly timeoutMs = 1000) {}

  /** Runs `chain` for the workflow of `bundle` (loaded on the sandbox thread on first use). */
  async chain(key: string, bundle: LoadedBundle, workflow: string, input: ChainInput): Promise<ChainResult> {
    const base = { key, service: bundle.service, workflow, input }
    let reply = this.#call({ id: this.#nextId++, ...base }, this.timeoutMs)
    if ('missing' in reply) {
      // Load first, under the loading limit, then run under the rule-code limit: a bundle's
      // first evaluation gets no more time for rule code than any other.
      const loaded = this.#call({ id: this.#nextId++, key, service: bundle.service, workflow, code: bundle.code }, LOAD_MS)
      if ('error' in loaded) throw new Error(`rule sandbox: ${loaded.error}`)
      reply = this.#call({ id: this.#nextId++, ...base }, this.timeoutMs)
    }
    if ('error' in reply) throw new Error(`rule sandbox: ${reply.error}`)
    if (!('result' in reply)) throw new Error('rule sandbox: bundle did not load')
    return reply.result
  }

  /** Stops the sandbox thread. */
  async close(): Promise<void> {
    const thread = this.#thread
    this.#thread = undefined
    await thread?.worker.terminate()
  }

  #call(request: SandboxRequest, timeoutMs: number): SandboxReply {
    const thread = this.#start()
    Atomics.store(thread.flag, 0, 0)
    thread.port.postMessage(request)
    const reply = this.#await(thread, timeoutMs) as SandboxReply | undefined
    if (reply?.id !== request.id) {
      this.#stop(thread)
      throw reply === undefined
        ? new RuleTimeoutError(`rule code ran longer than ${this.timeoutMs} ms in one evaluation (an endless loop?)`)
        : new Error(`rule sandbox answered request ${reply.id} for ${request.id}`)
    }
    return reply
  }

  #start(): Thread {
    if (this.#thread) return this.#thread
    const flag = new Int32Array(new SharedArrayBuffer(4))
    const { port1, port2 } = new MessageChannel()
    const worker = new Worker(WORKER_URL, { workerData: { port: port2, flag }, transferList: [port2] })
    worker.unref()
    port1.unref()
    const thread = { worker, port: port1, flag }
    worker.on('error', () => this.#stop(thread))
    worker.on('exit', () => this.#stop(thread))
    if (!this.#await(thread, LOAD_MS)) {
      this.#stop(thread)
      throw new Error(`the rule sandbox thread did not start within ${LOAD_MS} ms`)
    }
    this.#thread = thread
    return thread
  }

  /** Blocks until the thread flags a reply or `timeoutMs` passes; returns the reply, or undefined. */
  #await(thread: Thread, timeoutMs: number): unknown {
    const deadline = Date.now() + timeoutMs
    if (Atomics.wait(thread.flag, 0, 0, timeoutMs) === 'timed-out') return undefined
    // The thread posts before it flags, so the reply is normally there; poll briefly if not.
    for (;;) {
      const received = receiveMessageOnPort(thread.port)
      if (received) return received.message
      if (Date.now() > deadline) return undefined
      Atomics.wait(thread.flag, 0, 1, 1)
    }
  }

  #stop(thread: Thread): void {
    if (this.#thread === thread) this.#thread = undefined
    void thread.worker.terminate()
  }
}
