/** Follows an instance until it ends, printing each timeline entry as it lands, with counts. */
import type { ApiClient } from './client.js'

export interface Followed { status: string; facts: unknown; result: unknown; error: unknown; revision: number }

export async function follow(api: ApiClient, id: string, out: (line: string) => void, options: { timeoutMs: number }): Promise<Followed> {
  const started = Date.now()
  let after: string | undefined
  const counts = { fired: 0, succeeded: 0, failed: 0, scheduled: 0 }
  for (;;) {
    const instance = await api.request('GET', `/v1/instances/${id}?wait=completed&timeoutMs=500`)
    for (;;) {
      const page = await api.request('GET', `/v1/instances/${id}/timeline?limit=500${after ? `&after=${after}` : ''}`)
      for (const entry of page.entries as { id: string; kind: string; rule: string | null; data: any; at: string }[]) {
        after = entry.id
        if (entry.kind === 'rule.fired') counts.fired++
        if (entry.kind === 'invocation.scheduled') counts.scheduled++
        if (entry.kind === 'invocation.succeeded') counts.succeeded++
        if (entry.kind === 'invocation.failed') counts.failed++
        out(describe(entry, counts, Date.now() - started))
      }
      if (!page.nextCursor) break
    }
    if (instance.status !== 'running' && instance.status !== 'paused') return instance as Followed
    if (Date.now() - started > options.timeoutMs) throw new Error(`instance ${id} still ${instance.status} after ${options.timeoutMs} ms; follow it with \`praxis inspect ${id}\` (is a worker running for its pools?)`)
  }
}

function describe(entry: { kind: string; rule: string | null; data: any }, counts: Record<string, number>, ms: number): string {
  const t = `${String(ms).padStart(6)} ms`
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
