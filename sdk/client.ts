/**
 * The HTTP client generated API clients are built on: start a workflow, read it (facts typed),
 * wait for its end, send it signals, read its timeline. It runs wherever `fetch` does (Node 20+,
 * browsers, edge runtimes) and depends on nothing of the platform.
 */
import type { z } from 'zod'
import { formatIssues } from './context.js'
import type { Json } from './match.js'
import type { WorkflowRef } from './stub.js'

export interface ClientOptions {
  /** The rule server, e.g. `http://localhost:3000`. */
  url: string
  /** A tenant API key (`praxis dev` prints the local one). */
  apiKey: string
  /** Another fetch (tests, proxies). Default: the global one. */
  fetch?: typeof fetch
}

/** An instance as the API returns it, its facts and result typed by the workflow. */
export interface InstanceView<W extends WorkflowRef> {
  id: string
  service: string
  workflow: string
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'paused'
  revision: number
  facts: z.output<W['facts']>
  result: z.output<W['output']> | null
  error: { message: string; details: Json } | null
  bundleVersion: number
  createdAt: string
  updatedAt: string
  /**
   * Pools this running instance has calls waiting on with no live worker to serve them: start
   * `praxis worker <service-dir> --pool <pool>` (or `praxis dev`). Empty when every call is served.
   */
  waiting?: { pool: string; function: string; invocations: number; since: string; reason: string; fix: string }[]
}

export interface TimelineEntry { id: string; revision: number; kind: string; rule: string | null; data: Json; at: string }

/** One instance of workflow `W`. */
export interface InstanceHandle<W extends WorkflowRef> {
  readonly id: string
  /** False when the idempotency key had already started this instance. */
  readonly created: boolean
  get(): Promise<InstanceView<W>>
  /** Long-polls until the instance is no longer running (or `timeoutMs` passes), then reads it. */
  wait(options?: { timeoutMs?: number }): Promise<InstanceView<W>>
  signal<S extends keyof W['signals'] & string>(name: S, payload: z.input<W['signals'][S]>, options?: { signalId?: string }): Promise<{ delivered: boolean }>
  timeline(options?: { after?: string; limit?: number }): Promise<{ entries: TimelineEntry[]; nextCursor: string | null }>
}

/** Raised for a non-2xx answer: `code` is the API's error code (docs/errors.md). */
export class PraxisApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly details: unknown) {
    super(message)
    this.name = 'PraxisApiError'
  }
}

/** A typed client of one service's workflows. */
export interface ServiceClient<Ws extends Readonly<Record<string, WorkflowRef>>> {
  readonly service: string
  /** Validates the input against the workflow's schema, then starts an instance. */
  start<K extends keyof Ws & string>(workflow: K, input: z.input<Ws[K]['input']>, options?: { idempotencyKey?: string }): Promise<InstanceHandle<Ws[K]>>
  /** A handle on an existing instance of `workflow` (no request). */
  instance<K extends keyof Ws & string>(workflow: K, id: string): InstanceHandle<Ws[K]>
  /** Reads an instance; fails when it is not an instance of `workflow` of this service. */
  get<K extends keyof Ws & string>(workflow: K, id: string): Promise<InstanceView<Ws[K]>>
  signal<K extends keyof Ws & string, S extends keyof Ws[K]['signals'] & string>(workflow: K, id: string, name: S, payload: z.input<Ws[K]['signals'][S]>, options?: { signalId?: string }): Promise<{ delivered: boolean }>
  timeline(id: string, options?: { after?: string; limit?: number }): Promise<{ entries: TimelineEntry[]; nextCursor: string | null }>
}

/** Builds the client of `service` over its workflow references (what generated clients call). */
export function createServiceClient<Ws extends Readonly<Record<string, WorkflowRef>>>(service: string, workflows: Ws, options: ClientOptions): ServiceClient<Ws> {
  const doFetch = options.fetch ?? fetch
  const request = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    const response = await doFetch(new URL(path, options.url), {
      method,
      headers: { authorization: `Bearer ${options.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {}
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string; details?: unknown } }).error ?? {}
      throw new PraxisApiError(response.status, error.code ?? 'PRX_HTTP', `${method} ${path}: ${error.message ?? response.statusText}`, error.details)
    }
    return parsed as T
  }
  const ref = (workflow: string): WorkflowRef => {
    const found = workflows[workflow]
    if (!found) throw new Error(`service ${service} has no workflow ${workflow} in this client: regenerate it with praxis codegen`)
    return found
  }
  const read = async (workflow: string, id: string, query = ''): Promise<InstanceView<WorkflowRef>> => {
    const view = await request<InstanceView<WorkflowRef>>('GET', `/v1/instances/${encodeURIComponent(id)}${query}`)
    if (view.service !== service || view.workflow !== workflow) {
      throw new Error(`instance ${id} is ${view.service}.${view.workflow}, not ${service}.${workflow}`)
    }
    return view
  }
  const client: ServiceClient<Readonly<Record<string, WorkflowRef>>> = {
    service,
    async start(workflow, input, startOptions) {
      const parsed = ref(workflow).input.safeParse(input)
      if (!parsed.success) throw new Error(`input of ${service}.${workflow} is invalid: ${formatIssues(parsed.error.issues)}`)
      const started = await request<{ id: string; created: boolean }>('POST', `/v1/workflows/${service}.${workflow}/instances`, {
        input: parsed.data,
        ...(startOptions?.idempotencyKey ? { idempotencyKey: startOptions.idempotencyKey } : {}),
      })
      return handle(workflow, started.id, started.created)
    },
    instance: (workflow, id) => handle(workflow, id, false),
    get: (workflow, id) => read(workflow, id),
    async signal(workflow, id, name, payload, signalOptions) {
      const schema = ref(workflow).signals[name]
      if (!schema) throw new Error(`workflow ${service}.${workflow} has no signal ${name}`)
      const parsed = schema.safeParse(payload)
      if (!parsed.success) throw new Error(`payload of signal ${name} is invalid: ${formatIssues(parsed.error.issues)}`)
      return request('POST', `/v1/instances/${encodeURIComponent(id)}/signals/${encodeURIComponent(name)}`, {
        payload: parsed.data ?? null,
        ...(signalOptions?.signalId ? { signalId: signalOptions.signalId } : {}),
      })
    },
    timeline(id, timelineOptions) {
      const query = new URLSearchParams()
      if (timelineOptions?.after) query.set('after', timelineOptions.after)
      if (timelineOptions?.limit) query.set('limit', String(timelineOptions.limit))
      return request('GET', `/v1/instances/${encodeURIComponent(id)}/timeline${query.size ? `?${query}` : ''}`)
    },
  }
  function handle(workflow: string, id: string, created: boolean): InstanceHandle<WorkflowRef> {
    ref(workflow)
    return {
      id,
      created,
      get: () => read(workflow, id),
      async wait(waitOptions) {
        const deadline = Date.now() + (waitOptions?.timeoutMs ?? 60_000)
        for (;;) {
          const left = Math.max(0, deadline - Date.now())
          const view = await read(workflow, id, `?wait=completed&timeoutMs=${Math.min(left, 300_000)}`)
          if (view.status !== 'running' || left === 0) return view
        }
      },
      signal: (name, payload, signalOptions) => client.signal(workflow, id, name, payload as never, signalOptions),
      timeline: (timelineOptions) => client.timeline(id, timelineOptions),
    }
  }
  return client as unknown as ServiceClient<Ws>
}
