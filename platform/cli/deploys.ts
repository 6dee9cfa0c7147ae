/**
 * What `praxis deploy` and `praxis rollback` print: the rules a deploy adds, changes and removes,
 * a dry run's counts, and (with --wait) a progress bar over the background run that reaches old
 * work with the new rules.
 */
import type { ApiClient } from './client.js'

export interface Changes { workflow: string; added: string[]; changed: string[]; removed: string[] }
interface RuleCount { workflow: string; rule: string; change: 'added' | 'changed'; running: number; finished: number; how: 'sql' | 'host' }
export interface Preview { service: string; version: number | null; changes: Changes[]; fires: RuleCount[]; reopens: boolean; migrations?: Migration[] }
/** A workflow whose facts version the deploy raises, and the instances with older facts. */
interface Migration { workflow: string; to: number; running: number; finished: number }
export interface Run { id: string; status: 'running' | 'done' | 'superseded'; total: number; walked: number; queued: number; evaluated: number; fired: number; failed: number; createdAt: string }

/** A workflow's rule changes in words (`added a; changed b`), or '' when it has none. */
export function changeText(c: Changes): string {
  return [c.added.length ? `added ${c.added.join(', ')}` : '', c.changed.length ? `changed ${c.changed.join(', ')}` : '', c.removed.length ? `removed ${c.removed.join(', ')}` : ''].filter(Boolean).join('; ')
}

/** The rules a deploy changes, a line per workflow. */
export function printChanges(changes: readonly Changes[], out: (line: string) => void): void {
  for (const c of changes) out(`  ${c.workflow}: ${changeText(c) || 'no rule changed'}`)
}

/** A dry run: what would change, and how many instances each added or changed rule would fire on now. */
export function printPreview(preview: Preview, out: (line: string) => void): void {
  out(`dry run: ${preview.service}${preview.version === null ? ' (its first deploy: no old work to reach)' : `, now at version ${preview.version}`}; nothing was changed`)
  printChanges(preview.changes, out)
  const migrations = preview.migrations ?? []
  for (const m of migrations) {
    out(`  ${m.workflow}: facts migrated to version ${m.to} on ${m.running} running instance${m.running === 1 ? '' : 's'}${m.finished ? ` (and ${m.finished} finished, where reopened)` : ''}; an instance migrate fails on fails, the others go on`)
  }
  if (preview.fires.length === 0) {
    if (migrations.length === 0) out('  no added or changed rule: no running or finished instance would be re-evaluated')
    return
  }
  if (migrations.length > 0) out('  (rule counts are over the facts as they are now, before migration)')
  for (const f of preview.fires) {
    const finished = preview.reopens ? `, ${f.finished} finished (reopened)` : ''
    out(`  ${f.workflow}.${f.rule} (${f.change}) would fire on ${f.running} running${finished} instance${f.running === 1 ? '' : 's'} now (${f.how === 'sql' ? 'matched in SQL' : 'matched on the server'})`)
  }
}

/** Where progress goes: lines, and (on a terminal) a bar redrawn in place. */
export interface ProgressSink { line(text: string): void; redraw?: ((text: string) => void) | undefined; endRedraw?: (() => void) | undefined }

/** Lines to `stream`; on a terminal, the bar is redrawn in place with `\r`. */
export function streamSink(stream: NodeJS.WriteStream): ProgressSink {
  const line = (text: string): void => void stream.write(text + '\n')
  if (!stream.isTTY) return { line }
  return { line, redraw: (text) => void stream.write(`\r${text}`), endRedraw: () => void stream.write('\n') }
}

/**
 * Says which run reaches old work, and with `wait` draws its progress until it is done (or
 * superseded by a newer deploy): walked of total, queued, evaluated, fired, failed, rate. Returns
 * the exit code and the run's last progress record (GET /v1/services/:service/reprocessing/:run).
 */
export async function followRun(api: ApiClient, service: string, run: { id: string }, sink: ProgressSink, options: { wait: boolean; timeoutMs: number }): Promise<{ code: number; run: Run }> {
  const out = sink.line
  const first = await api.request('GET', `/v1/services/${service}/reprocessing/${run.id}`) as Run
  if (first.status === 'done' && first.total === 0) {
    out('  no added or changed rule reaches old work: nothing to reprocess')
    return { code: 0, run: first }
  }
  out(`  reaching old work in the background: run ${run.id} over ${first.total} running instance${first.total === 1 ? '' : 's'}${options.wait ? '' : ` (follow it: praxis deploy … --wait, or GET /v1/services/${service}/reprocessing/${run.id})`}`)
  if (!options.wait) return { code: 0, run: first }
  const started = Date.now()
  let last = ''
  const endLine = (): void => { if (sink.redraw) sink.endRedraw?.() }
  for (;;) {
    const p = await api.request('GET', `/v1/services/${service}/reprocessing/${run.id}`) as Run
    // Done walking and every queued evaluation has run.
    const settled = p.status !== 'running' && p.evaluated >= p.queued
    const line = `  ${bar(p.walked, p.total)} ${p.walked}/${p.total} walked, ${p.queued} queued, ${p.evaluated} evaluated, ${p.fired} fired, ${p.failed} failed, ${rate(p.walked, Date.now() - started)}`
    if (sink.redraw) sink.redraw(line)
    else if (line !== last) out(line)
    last = line
    if (p.status === 'superseded') {
      endLine()
      out(`  run ${run.id} was superseded by a newer deploy of ${service}: that deploy's run goes on from here`)
      return { code: 0, run: p }
    }
    if (settled) {
      endLine()
      out(`  done: ${p.fired} instance${p.fired === 1 ? '' : 's'} fired a new or changed rule, ${p.failed} failed${p.failed ? ' (see their timelines: praxis inspect <id>)' : ''}`)
      return { code: p.failed > 0 ? 1 : 0, run: p }
    }
    if (Date.now() - started > options.timeoutMs) {
      endLine()
      out(`  still running after ${options.timeoutMs} ms (queued evaluations need a worker of the tenant: praxis worker or praxis dev); it goes on in the background`)
      return { code: 1, run: p }
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
