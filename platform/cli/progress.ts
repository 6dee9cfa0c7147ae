/**
 * Follows an instance until it ends, printing each timeline entry as it lands, with counts. Each
 * line is stamped with when the event happened: the entry's `at` (the server's clock), in ms since
 * the instance was created, so a slow poll or a late print never shifts the times. A call waiting
 * on a pool no live worker serves is said once per pool ("no worker serves pool … since …: start
 * one with …", stamped with its `since`), and once more when a worker serves it after all (stamped
 * when the CLI sees it: that is no event of the timeline).
 */
import type { ApiClient } from './client.js'

export interface Followed { status: string; facts: unknown; result: unknown; error: unknown; revision: number }

/** A pool the instance waits on with no live worker (GET /v1/instances/:id `waiting`). */
interface Waiting { pool: string; function: string; since: string; reason: string; fix: string }

interface Entry { id: string; kind: string; rule: string | null; data: any; at: string }

/** `    42 ms`: the time of `at` after `base` (both ISO times or epoch ms). */
export function stampAt(at: string | number, base: number): string {
  const t = typeof at === 'number' ? at : Date.parse(at)
  return `${String(Number.isNaN(t) ? '?' : Math.round(t - base)).padStart(6)} ms`
}

export async function follow(api: ApiClient, id: string, out: (line: string) => void, options: { timeoutMs: number }): Promise<Followed> {
  const started = Date.now()
  let after: string | undefined
  const counts = { fired: 0, succeeded: 0, failed: 0, scheduled: 0 }
  // Pools said to have no worker, until one serves them.
  const unserved = new Set<string>()
  // The instance's creation on the server's clock: every stamp is an offset from it.
  let base: number | undefined
  const sayUnserved = (w: { pool: string; reason: string; fix: string }, at: string | number): void => {
    if (unserved.has(w.pool)) return
    unserved.add(w.pool)
    out(`${stampAt(at, base!)}  ${w.reason}: ${w.fix}`)
  }
  for (;;) {
    const instance = await api.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=500`)
    if (base === undefined) {
      const created = Date.parse(instance.createdAt)
      base = Number.isNaN(created) ? started : created
    }
    for (;;) {
      const page = await api.request('GET', `/v1/instances/${id}/timeline?limit=500${after ? `&after=${after}` : ''}`)
      for (const entry of page.entries as Entry[]) {
        after = entry.id
        if (entry.kind === 'rule.fired') counts.fired++
        if (entry.kind === 'invocation.scheduled') counts.scheduled++
        if (entry.kind === 'invocation.succeeded') counts.succeeded++
        if (entry.kind === 'invocation.failed') counts.failed++
        // Said where it happened in the timeline; only while the view still says so (it is history).
        if (entry.kind === 'pool.unserved') {
          const waiting = ((instance.waiting ?? []) as Waiting[]).find((w) => w.pool === entry.data.pool)
          if (waiting || instance.waiting === undefined) sayUnserved({ pool: entry.data.pool, reason: entry.data.reason, fix: entry.data.fix }, entry.at)
          else out(`${stampAt(entry.at, base)}  ${entry.kind} ${entry.data.pool}: ${entry.data.reason} (a worker serves it now)`)
          continue
        }
        out(describe(entry, counts, base))
      }
      if (!page.nextCursor) break
    }
    const waiting = (instance.waiting ?? []) as Waiting[]
    for (const w of waiting) sayUnserved(w, w.since ?? Date.now())
    for (const pool of [...unserved]) {
      if (waiting.some((w) => w.pool === pool)) continue
      unserved.delete(pool)
      if (instance.status === 'running' || instance.status === 'paused') out(`${stampAt(Date.now(), base)}  a worker serves pool ${pool} now`)
    }
    if (instance.status !== 'running' && instance.status !== 'paused') return instance as Followed
    if (Date.now() - started > options.timeoutMs) {
      const why = waiting.length > 0 ? `: ${waiting.map((w) => `${w.reason} (${w.fix})`).join('; ')}` : ' (is a worker running for its pools?)'
      throw new Error(`instance ${id} still ${instance.status} after ${options.timeoutMs} ms; follow it with \`praxis inspect ${id}\`${why}`)
    }
  }
}

function describe(entry: Entry, counts: Record<string, number>, base: number): string {
  const t = stampAt(entry.at, base)
  const rule = entry.rule ? ` ${entry.rule}` : ''
  switch (entry.kind) {
    case 'invocation.scheduled': return `${t}  ${entry.kind}${rule} → ${entry.data.function}`
    case 'invocation.succeeded': return `${t}  ${entry.kind} ${entry.data.function} (${counts.succeeded}/${counts.scheduled} done)`
    case 'invocation.failed': return `${t}  ${entry.kind} ${entry.data.function}: ${entry.data.failure?.kind} ${entry.data.failure?.message}`
    case 'invocation.retrying': return `${t}  ${entry.kind} ${entry.data.function}: attempt ${entry.data.attempt} failed (${entry.data.failure?.message}); next in ${entry.data.retryInMs} ms`
    case 'facts.changed': return `${t}  ${entry.kind}${rule} ${Object.keys(entry.data.changes ?? {}).join(', ')}`
    case 'instance.failed': return `${t}  ${entry.kind}: ${entry.data.error?.message}`
    default: return `${t}  ${entry.kind}${rule}`
  }
}
