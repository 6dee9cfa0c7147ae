/**
 * Concurrency caps of a worker process, nested: the worker's concurrency (the tenant's share of
 * this process) ⊇ a service's cap ⊇ a pool's cap. A child cap can never exceed its parent: a
 * configuration that says so is refused at start.
 *
 * Two layers enforce them. graphile-worker's `forbiddenFlags` keeps the worker from fetching a job
 * of a pool or service at its cap (every invoke job carries the flags `pool:<service:pool>` and
 * `service:<service>`, see platform/queue/step.ts), so a slot fetches other work instead; and a
 * job that was fetched in the instant before a cap filled waits here for a place, so the cap is
 * never exceeded. (No semaphore library does this: a place is taken in two nested caps at once.)
 */

export interface CapsOptions {
  /** Qualified pool (`service:pool`) → most invocations of it running at once in this process. */
  pools?: Record<string, number>
  /** Service → most invocations of its pools running at once in this process. */
  services?: Record<string, number>
}

const serviceOf = (pool: string): string => pool.slice(0, Math.max(0, pool.indexOf(':'))) || pool

/** Checks caps against each other and the concurrency; throws naming the first that breaks nesting. */
export function checkCaps(caps: CapsOptions, concurrency: number): void {
  const whole = (what: string, n: number): void => {
    if (!Number.isInteger(n) || n < 1) throw new Error(`the cap of ${what} must be a whole number of at least 1, got ${n}`)
  }
  for (const [service, n] of Object.entries(caps.services ?? {})) {
    whole(`service ${service}`, n)
    if (n > concurrency) throw new Error(`service ${service} is capped at ${n}, more than the worker's concurrency of ${concurrency}: a service's cap cannot exceed its tenant's`)
  }
  for (const [pool, n] of Object.entries(caps.pools ?? {})) {
    whole(`pool ${pool}`, n)
    if (!pool.includes(':')) throw new Error(`pool cap ${pool}: name the pool with its service, as service:pool`)
    const parent = caps.services?.[serviceOf(pool)] ?? concurrency
    if (n > parent) throw new Error(`pool ${pool} is capped at ${n}, more than its ${caps.services?.[serviceOf(pool)] ? `service's cap of ${parent}` : `worker's concurrency of ${parent}`}: a pool's cap cannot exceed its parent's`)
  }
}

/** Running counts against the caps, in this process. */
export class Caps {
  readonly #pools: Map<string, number>
  readonly #services: Map<string, number>
  readonly #running = new Map<string, number>()
  readonly #waiters: { pool: string; resolve: () => void }[] = []
  #max = new Map<string, number>()

  constructor(options: CapsOptions = {}) {
    this.#pools = new Map(Object.entries(options.pools ?? {}))
    this.#services = new Map(Object.entries(options.services ?? {}))
  }

  /** Whether any cap is set (otherwise nothing is counted). */
  get active(): boolean {
    return this.#pools.size > 0 || this.#services.size > 0
  }

  /** Whether one more invocation of `pool` fits, with `releasing` (a pool whose place is about to be freed) not counted. */
  fits(pool: string, releasing?: string): boolean {
    const count = (key: string, released: boolean): number => (this.#running.get(key) ?? 0) - (released ? 1 : 0)
    const poolCap = this.#pools.get(pool)
    if (poolCap !== undefined && count(`pool:${pool}`, releasing === pool) >= poolCap) return false
    const service = serviceOf(pool)
    const serviceCap = this.#services.get(service)
    return serviceCap === undefined || count(`service:${service}`, releasing !== undefined && serviceOf(releasing) === service) < serviceCap
  }

  /** The job flags of pools and services at their caps (graphile-worker skips such jobs). */
  forbidden(): string[] {
    const flags: string[] = []
    for (const [pool, cap] of this.#pools) if ((this.#running.get(`pool:${pool}`) ?? 0) >= cap) flags.push(`pool:${pool}`)
    for (const [service, cap] of this.#services) if ((this.#running.get(`service:${service}`) ?? 0) >= cap) flags.push(`service:${service}`)
    return flags
  }

  /** Takes a place for an invocation of `pool`, waiting while its pool or service is at its cap. */
  async acquire(pool: string): Promise<() => void> {
    if (!this.active) return () => undefined
    while (!this.fits(pool)) await new Promise<void>((resolve) => this.#waiters.push({ pool, resolve }))
    this.#add(pool, 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.#add(pool, -1)
      // Wake every waiter: each checks its own pool again (few waiters: only a fetch race makes one).
      for (const waiter of this.#waiters.splice(0)) waiter.resolve()
    }
  }

  /** The most invocations of a pool (`pool:…`) or service (`service:…`) that ran at once. */
  peak(key: string): number {
    return this.#max.get(key) ?? 0
  }

  #add(pool: string, by: number): void {
    for (const key of [`pool:${pool}`, `service:${serviceOf(pool)}`]) {
      const n = (this.#running.get(key) ?? 0) + by
      this.#running.set(key, n)
      if (n > (this.#max.get(key) ?? 0)) this.#max.set(key, n)
    }
  }
}
