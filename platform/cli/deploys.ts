/**
 * What `praxis deploy` and `praxis rollback` print: the rules a deploy adds, changes and removes,
 * a dry run's counts, and (with --wait) a progress bar over the background run that reaches old
 * work with the new rules.
 */
import type { ApiClient } from './client.js'

interface Changes { workflow: string; added: string[]; changed: string[]; removed: string[] }
interface RuleCount { workflow: string; rule: string; change: 'added' | 'changed'; running: number; finished: number; how: 'sql' | 'host' }
interface Preview { service: string; version: number | null; changes: Changes[]; fires: RuleCount[]; reopens: boolean }
interface Run { id: string; status: 'running' | 'done' | 'superseded'; total: number; walked: number; queued: number; evaluated: number; fired: number; failed: number; createdAt: string }

/** The rules a deploy changes, a line per workflow that has any. */
export function printChanges(changes: readonly Changes[], out: (line: string) => void): void {
  for (const c of changes) {
    const parts = [c.added.length ? `added ${c.added.join(', ')}` : '', c.changed.length ? `changed ${c.changed.join(', ')}` : '', c.removed.length ? `removed ${c.removed.join(', ')}` : ''].filter(Boolean)
    out(`  ${c.workflow}: ${parts.length ? parts.join('; ') : 'no rule changed'}`)
  }
}

/** A dry run: what would change, and how many instances each added or changed rule would fire on now. */
export function printPreview(preview: Preview, out: (line: string) => void): void {
  out(`dry run: ${preview.service}${preview.version === null ? ' (its first deploy: no old work to reach)' : `, now at version ${preview.version}`}; nothing was changed`)
  printChanges(preview.changes, out)
  if (preview.fires.length === 0) {
    out('  no added or changed rule: no running or finished instance would be re-evaluated')
    return
  }
  for (const f of preview.fires) {
    const finished = preview.reopens ? `, ${f.finished} finished (reopened)` : ''
    out(`  ${f.workflow}.${f.rule} (${f.change}) would fire on ${f.running} running${finished} instance${f.running === 1 ? '' : 's'} now (${f.how === 'sql' ? 'matched in SQL' : 'matched on the server'})`)
  }
}

/**
 * Says which run reaches old work, and with `wait` draws its progress until it is done (or
 * superseded by a newer deploy): walked of total, queued, evaluated, fired, failed, rate.
 */
export async function followRun(api: ApiClient, service: string, run: { id: string }, out: (line: string) => void, options: { wait: boolean; timeoutMs: number }): Promise<number> {
  const first = await api.request('GET', `/v1/services/${service}/reprocessing/${run.id}`) as Run
  if (first.status === 'done' && first.total === 0) {
    out('  no added or changed rule reaches old work: nothing to reprocess')
    return 0
  }
  out(`  reaching old work in the background: run ${run.id} over ${first.total} running instance${first.total === 1 ? '' : 's'}${options.wait ? '' : ` (follow it: praxis deploy … --wait, or GET /v1/services/${service}/reprocessing/${run.id})`}`)
  if (!options.wait) return 0
  const started = Date.now()
  const tty = Boolean(process.stdout.isTTY)
  let last = ''
  for (;;) {
    const p = await api.request('GET', `/v1/services/${service}/reprocessing/${run.id}`) as Run
    // Done walking and every queued evaluation has run.
    const settled = p.status !== 'running' && p.evaluated >= p.queued
    const line = `  ${bar(p.walked, p.total)} ${p.walked}/${p.total} walked, ${p.queued} queued, ${p.evaluated} evaluated, ${p.fired} fired, ${p.failed} failed, ${rate(p.walked, Date.now() - started)}`
    if (tty) process.stdout.write(`\r${line}`)
    else if (line !== last) out(line)
    last = line
    if (p.status === 'superseded') {
      if (tty) process.stdout.write('\n')
      out(`  run ${run.id} was superseded by a newer deploy of ${service}: that deploy's run goes on from here`)
      return 0
    }
    if (settled) {
      if (tty) process.stdout.write('\n')
      out(`  done: ${p.fired} instance${p.fired === 1 ? '' : 's'} fired a new or changed rule, ${p.failed} failed${p.failed ? ' (see their timelines: praxis inspect <id>)' : ''}`)
      return p.failed > 0 ? 1 : 0
    }
    if (Date.now() - started > options.timeoutMs) {
      if (tty) process.stdout.write('\n')
      out(`  still running after ${options.timeoutMs} ms (queued evaluations need a worker of the tenant: praxis worker or praxis dev); it goes on in the background`)
      return 1
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

function bar(done: number, total: number): string {
  const width = 24
  const filled = total === 0 ? width : Math.min(width, Math.round((done / total) * width))
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

function rate(n: number, ms: number): string {
  return ms < 1 ? '' : `${Math.round((n / ms) * 1000)}/s`
}
