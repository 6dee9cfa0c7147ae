/** Long-poll support: one LISTEN connection wakes every request waiting for an instance to end. */
import pg from 'pg'

export class EndedInstanceWaiters {
  readonly #waiting = new Map<string, Set<() => void>>()
  #client: pg.Client | undefined

  constructor(private readonly url: string) {}

  async start(): Promise<void> {
    this.#client = new pg.Client({ connectionString: this.url })
    this.#client.on('error', () => undefined)
    this.#client.on('notification', (message) => {
      for (const wake of this.#waiting.get(message.payload ?? '') ?? []) wake()
    })
    await this.#client.connect()
    await this.#client.query('listen praxis_instance_ended')
  }

  /** Resolves when the instance's end is notified or `timeoutMs` passes; `check` closes the race with a notification sent before we listened. */
  async wait(tenantId: string, instanceId: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
    const key = `${tenantId}:${instanceId}`
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    const set = this.#waiting.get(key) ?? new Set()
    set.add(wake)
    this.#waiting.set(key, set)
    const timer = setTimeout(wake, timeoutMs)
    try {
      if (await check()) return
      await woken
    } finally {
      clearTimeout(timer)
      set.delete(wake)
      if (set.size === 0) this.#waiting.delete(key)
    }
  }

  async stop(): Promise<void> {
    await this.#client?.end().catch(() => undefined)
  }
}
