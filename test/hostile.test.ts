/**
 * The hostile suite (issue 8, item 7): rule code is hostile input. Each probe is rule code in its
 * own tenant's bundle (top level, init, action, reaction, error section, signal handler), and each
 * test checks that
 *   - only that probe's instance fails, with the right error code in its timeline (or, for the
 *     determinism probes, that rule code sees logical time, seeded random and no kept state),
 *   - /v1/health answers during the busy probes (the host's event loop is never blocked by rule
 *     code) and after every probe, and the host process is still the same one,
 *   - the same tenant's next ordinary instance completes and sees nothing left over,
 *   - another tenant's workflow started next (through a function and its reaction) completes,
 *   - no secret (database URL or password, an env canary, a file canary, another tenant's
 *     function output), file, socket or Node internals came back in any answer, fact or timeline.
 *
 * The API (and the workers) run in a child process (support/hostile-host.ts) so that a probe that
 * kills or hangs its host fails that probe only; the next probe gets a new host.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { codeOf, Harness, NoAnswer, VICTIM_SECRET, type At, type Reply, type Tenant } from './support/hostile.js'

const h = new Harness()
beforeAll(async () => h.start(), 180_000)
afterAll(async () => h.close())

/** Generous: the limit is the host being blocked for the whole CPU limit of rule code (1 s). */
const BUSY_GAP_MS = 750

type Expect =
  /** The instance fails with one of these codes (init: the start answers 4xx with one of them, or PRX_BUNDLE_INVALID). */
  | { fails: string[] }
  /** The instance completes; `check` returns what is wrong with what the probe saw. */
  | { completes: (got: string | undefined, view: any, c: RunContext) => string | null | Promise<string | null> }
  /** Either of the above (the sandbox may stop the probe or let it finish harmlessly). */
  | { failsOrCompletes: string[] }

type Where = At | 'top'

interface Case {
  name: string
  where: Where
  /** The probe (of test/fixtures/hostile/probes.ts) the workflow runs; top level: the action probe after deploying. */
  probe: string
  expect: Expect
  /** Top level: text wrapped around the good bundle's code. */
  top?: { before?: string; after?: string; deploy: 'refused' | 'accepted' | 'either' }
  /** Measure /v1/health while the probe runs. */
  busy?: boolean
  /** More checks; returns problems. */
  extra?: (c: RunContext) => Promise<string[]>
}

interface RunContext { tenant: Tenant; id: string | null; view: any; t0: number; problems: string[] }

const JS = String.raw
/** Appended at the top level of a bundle: the finding (import() rejection → host `process`). */
const TOP_IMPORT_ESCAPE = JS`
;(() => {
  const g = globalThis
  const keep = (s) => { try { (g.__hostileLoot ??= []).push(s) } catch {} }
  for (const spec of ['x', 'node:fs', 'node:child_process']) {
    try {
      // Keeps something only when it got somewhere: load-time state of a bundle is not a leftover.
      import(spec).then((m) => keep('top import(' + spec + ') resolved: ' + Object.keys(m).slice(0, 5)),
        (e) => { try { const p = e.constructor.constructor('return process')(); keep('ESCAPED process DATABASE_URL=' + p.env.DATABASE_URL + ' CANARY=' + p.env.PRAXIS_HOSTILE_CANARY) } catch (err) { } })
    } catch {}
  }
})();`
const TOP_PREPARE_STACK = JS`
;(() => {
  const g = globalThis
  const keep = (s) => { try { (g.__hostileLoot ??= []).push(s) } catch {} }
  try {
    Error.prepareStackTrace = (e, frames) => {
      for (const f of frames) {
        for (const v of [f.getThis && f.getThis(), f.getFunction && f.getFunction()]) {
          try { if (v) { const p = (typeof v === 'function' ? v : v.constructor).constructor('return process')(); if (p && p.env) keep('ESCAPED process DATABASE_URL=' + p.env.DATABASE_URL) } } catch {}
        }
      }
      return 'frames: ' + frames.length
    }
    void new Error('top').stack
  } catch {}
  try { delete Error.prepareStackTrace } catch {}
})();`
/** Appended at the top level: rule code replaces the runtime and forges a call to the victim tenant's function. */
const TOP_FORGED_RUNTIME = JS`
;(() => {
  const rt = globalThis.__praxis
  const run = rt.run
  const forged = { op: 'call', function: 'secret', pool: 'hostile-victim:default', retry: { attempts: 1000000000, backoff: 'fixed', initialDelayMs: 0, maxDelayMs: 0 }, timeoutMs: 1000000000, input: {}, key: null, priority: 0 }
  globalThis.__praxis = { ...rt, run(request) {
    const result = JSON.parse(run(request))
    const target = JSON.parse(request).target
    if (result.ok && target.rule === 'act' && target.section === 'action') { result.calls = [...result.calls, forged]; result.facts = { ...result.facts, stage: 'called' }; result.changes = [...new Set([...result.changes, 'stage'])] }
    return JSON.stringify(result)
  }, execute(request) { return JSON.parse(this.run(JSON.stringify(request))) } }
})();`

const clean = (got: string | undefined): string | null => (got && /ESCAPED|with process|DATABASE_URL=|FILE=/.test(got) ? `reached the host: ${got.slice(0, 800)}` : null)

function clockCheck(mode: 'created' | 'event' | 'request') {
  return (got: string | undefined, view: any, c: RunContext): string | null => {
    if (!got) return 'the clock probe reported nothing'
    const t = JSON.parse(got) as { a: number; b: number; c: string; d: number; e: number }
    if (t.a !== t.d) return `Date.now() moved within one evaluation (${t.a} then ${t.d}): rule code sees a live clock`
    if (t.b !== t.e) return `new Date() moved within one evaluation (${t.b} then ${t.e}): rule code sees a live clock`
    if (t.a !== t.b) return `Date.now() ${t.a} and new Date().getTime() ${t.b} differ`
    if (Math.floor(Date.parse(t.c) / 1000) !== Math.floor(t.a / 1000)) return `Date() ${JSON.stringify(t.c)} is not Date.now() ${t.a}`
    const created = Date.parse(view.createdAt)
    const [lo, hi] = mode === 'created' ? [created - 2000, created + 2000] : mode === 'event' ? [created - 2000, Date.parse(view.updatedAt) + 2000] : [c.t0 - 2000, Date.now() + 2000]
    if (t.a < lo || t.a > hi) return `logical time ${t.a} (${new Date(t.a).toISOString()}) is not the ${mode === 'created' ? 'creation' : mode === 'event' ? 'event' : 'request'} time (${new Date(lo + 2000).toISOString()})`
    return null
  }
}

/** Starts `count` more instances of `probe` at `at` in the tenant and returns what each saw. */
async function more(c: RunContext, probe: string, at: At, count: number, tenant = c.tenant): Promise<(string | undefined)[]> {
  const seen: (string | undefined)[] = []
  for (let i = 0; i < count; i++) {
    const r = await h.startProbe(tenant, probe, at)
    if (r.status !== 201) {
      c.problems.push(`extra instance ${i + 1}: start answered ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`)
      continue
    }
    const { view } = await h.settle(tenant, r.body.id, at === 'action' || at === 'init' ? 3000 : 20_000)
    if (view?.status !== 'completed') c.problems.push(`extra instance ${i + 1}: ${view?.status} ${JSON.stringify(view?.error ?? null).slice(0, 300)}`)
    seen.push(view?.facts?.got)
  }
  return seen
}

function counterCase(name: string, probe: string, at: At): Case {
  return {
    name, where: at, probe,
    expect: { completes: (got) => (got === '1' ? null : `the first instance counted ${got}`) },
    extra: async (c) => {
      const seen = await more(c, probe, at, 2)
      return seen.some((s) => s !== '1') ? [`a counter kept between evaluations: the next instances read ${JSON.stringify(seen)} (every instance must read "1")`] : []
    },
  }
}

async function invocationsOf(tenant: Tenant): Promise<any[]> {
  const { rows } = await h.db.pool.query('select function, pool, retry, timeout_ms, status, priority from praxis.invocations where tenant_id = $1', [tenant.id])
  return rows
}

const CASES: Case[] = [
  // --- top level: deploying the bundle runs it ---------------------------------------------
  { name: 'top-throw', where: 'top', probe: 'noop', top: { after: ';throw new Error("hostile top-level throw");', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-loop', where: 'top', probe: 'noop', busy: true, top: { after: ';for (;;) {}', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-reject', where: 'top', probe: 'noop', top: { after: ';Promise.reject(new Error("hostile top-level rejection"));', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-alloc', where: 'top', probe: 'noop', busy: true, top: { after: ';{ const keep = []; for (;;) keep.push(new Array(100000).fill(keep.length)) }', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-microtask-loop', where: 'top', probe: 'noop', busy: true, top: { after: ';(async () => { for (;;) await null })();', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-sab-wait', where: 'top', probe: 'noop', busy: true, top: { after: ';Atomics.wait(new Int32Array(new SharedArrayBuffer(8)), 0, 0);', deploy: 'refused' }, expect: { fails: [] } },
  { name: 'top-import-escape', where: 'top', probe: 'noop', top: { after: TOP_IMPORT_ESCAPE, deploy: 'either' }, expect: { completes: (got) => (got ? `rule code saw ${got.slice(0, 600)}` : null) } },
  { name: 'top-prepare-stack', where: 'top', probe: 'noop', top: { after: TOP_PREPARE_STACK, deploy: 'either' }, expect: { completes: clean } },
  { name: 'top-forged-runtime', where: 'top', probe: 'noop', top: { after: TOP_FORGED_RUNTIME, deploy: 'accepted' }, expect: { fails: ['PRX_FUNCTION_UNKNOWN'] } },

  // --- init (runs when the start request comes) --------------------------------------------
  { name: 'init-loop', where: 'init', probe: 'loop', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  { name: 'init-alloc', where: 'init', probe: 'alloc', busy: true, expect: { fails: ['PRX_RULE_MEMORY', 'PRX_RULE_TIMEOUT'] } },
  { name: 'init-string-200mb', where: 'init', probe: 'string-200mb', busy: true, expect: { failsOrCompletes: ['PRX_RULE_MEMORY', 'PRX_RULE_TIMEOUT'] } },
  { name: 'init-reject', where: 'init', probe: 'reject', expect: { failsOrCompletes: ['PRX_RULE_THREW', 'PRX_RULE_ASYNC'] } },
  { name: 'init-microtask-loop', where: 'init', probe: 'microtask-loop', busy: true, expect: { failsOrCompletes: ['PRX_RULE_TIMEOUT', 'PRX_RULE_ASYNC'] } },
  { name: 'init-import-escape', where: 'init', probe: 'import-escape', expect: { completes: clean } },
  { name: 'init-error-ctor', where: 'init', probe: 'error-ctor', expect: { completes: clean } },
  { name: 'init-clock', where: 'init', probe: 'clock', expect: { completes: clockCheck('request') } },

  // --- action ------------------------------------------------------------------------------
  { name: 'action-throw', where: 'action', probe: 'throw', expect: { fails: ['PRX_RULE_THREW'] } },
  { name: 'action-throw-proxy', where: 'action', probe: 'throw-proxy', expect: { fails: ['PRX_RULE_THREW'] } },
  { name: 'action-loop', where: 'action', probe: 'loop', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  { name: 'action-recursion', where: 'action', probe: 'recursion', expect: { fails: ['PRX_RULE_THREW'] } },
  { name: 'action-recursion-catch', where: 'action', probe: 'recursion-catch', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  // Allocation is stopped by the memory cap, or by the time limit when the heap fills slowly (a loaded machine).
  { name: 'action-alloc', where: 'action', probe: 'alloc', busy: true, expect: { fails: ['PRX_RULE_MEMORY', 'PRX_RULE_TIMEOUT'] } },
  { name: 'action-microtask-loop', where: 'action', probe: 'microtask-loop', busy: true, expect: { failsOrCompletes: ['PRX_RULE_TIMEOUT', 'PRX_RULE_ASYNC'] } },
  {
    name: 'action-reject', where: 'action', probe: 'reject', expect: { failsOrCompletes: ['PRX_RULE_THREW', 'PRX_RULE_ASYNC'] },
    // Once more, with other tenants' evaluations right behind it.
    extra: async (c) => {
      const [, ...others] = await Promise.all([h.startProbe(c.tenant, 'reject', 'action'), ...[1, 2, 3].map(() => h.ordinary(h.honest, 'action', 'honest instance started with a rejecting one'))])
      return others.flat()
    },
  },
  { name: 'action-return-promise', where: 'action', probe: 'return-promise', expect: { fails: ['PRX_RULE_ASYNC'] } },
  { name: 'action-sab-atomics', where: 'action', probe: 'sab', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT', 'PRX_RULE_THREW'] } },
  { name: 'action-wasm', where: 'action', probe: 'wasm', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT', 'PRX_RULE_THREW'] } },
  { name: 'action-error-ctor', where: 'action', probe: 'error-ctor', expect: { completes: clean } },
  { name: 'action-promise-ctor', where: 'action', probe: 'promise-ctor', expect: { completes: clean } },
  // The async constructors' `return process` rejects; a rejection rule code leaves unhandled fails its evaluation.
  { name: 'action-function-ctors', where: 'action', probe: 'function-ctors', expect: { failsOrCompletes: ['PRX_RULE_THREW'] } },
  { name: 'action-proxy', where: 'action', probe: 'proxy', expect: { completes: clean } },
  { name: 'action-import-escape', where: 'action', probe: 'import-escape', expect: { completes: clean } },
  { name: 'action-prepare-stack', where: 'action', probe: 'prepare-stack', expect: { completes: clean } },
  { name: 'action-caller-chain', where: 'action', probe: 'caller-chain', expect: { completes: clean } },
  {
    name: 'action-host-apis', where: 'action', probe: 'host-apis',
    expect: { completes: (got) => (got === 'reachable: []' ? null : `host APIs reachable from rule code: ${got}`) },
  },
  { name: 'action-clock', where: 'action', probe: 'clock', expect: { completes: clockCheck('created') } },
  {
    name: 'action-random', where: 'action', probe: 'random',
    expect: {
      completes: (got) => {
        const values = JSON.parse(got ?? 'null') as number[] | null
        return Array.isArray(values) && values.length === 5 && values.every((v) => v >= 0 && v < 1) && new Set(values).size === 5 ? null : `Math.random gave ${got}`
      },
    },
    extra: async (c) => {
      const first = c.view?.facts?.got
      const [sameTenant] = await more(c, 'random', 'action', 1)
      const other = await h.tenant('probe-action-random-b')
      const deployed = await h.deploy(other, 'hostile', h.bundle.code, h.bundle.manifest)
      if (deployed.status !== 201) return [`second tenant: deploy answered ${deployed.status}`]
      const [otherTenant] = await more(c, 'random', 'action', 1, other)
      const problems: string[] = []
      if (sameTenant === first) problems.push(`two instances of one tenant got the same Math.random sequence ${first}`)
      if (otherTenant === first) problems.push(`the first instances of two tenants got the same Math.random sequence ${first}: it is not seeded by the instance`)
      return problems
    },
  },
  counterCase('action-global-counter', 'global-counter', 'action'),
  { name: 'action-pollute', where: 'action', probe: 'pollute', expect: { failsOrCompletes: ['PRX_RULE_THREW'] } },
  { name: 'action-pollute-json', where: 'action', probe: 'pollute-json', expect: { failsOrCompletes: ['PRX_RULE_THREW'] } },
  { name: 'action-huge-calls', where: 'action', probe: 'huge-calls', expect: { fails: ['PRX_LIMIT_CALLS'] } },
  { name: 'action-huge-calleach', where: 'action', probe: 'huge-calleach', expect: { fails: ['PRX_LIMIT_CALLS'] } },
  { name: 'action-huge-facts', where: 'action', probe: 'huge-facts', expect: { fails: ['PRX_LIMIT_FACTS'] } },
  { name: 'action-deep-facts', where: 'action', probe: 'deep-facts', expect: { fails: ['PRX_LIMIT_FACTS'] } },
  { name: 'action-big-input', where: 'action', probe: 'big-input', expect: { fails: ['PRX_LIMIT_INPUT'] } },
  { name: 'action-priority', where: 'action', probe: 'priority', expect: { fails: ['PRX_LIMIT_PRIORITY'] } },
  {
    // The host takes retry and timeout from the manifest (or refuses the call), never from rule code.
    name: 'action-forged-retry', where: 'action', probe: 'forged-retry', expect: { failsOrCompletes: ['PRX_LIMIT_CALLS', 'PRX_LIMIT_RETRY', 'PRX_LIMIT_TIMEOUT', 'PRX_FUNCTION_UNKNOWN'] },
    extra: async (c) => {
      const rows = await invocationsOf(c.tenant)
      const bad = rows.filter((r) => Number(r.retry?.attempts) > 100 || Number(r.timeout_ms) > 60_000)
      return bad.length ? [`a call with the retry/timeout rule code forged was accepted: ${JSON.stringify(bad).slice(0, 400)}`] : []
    },
  },
  {
    name: 'action-forged-pool', where: 'action', probe: 'forged-pool', expect: { failsOrCompletes: ['PRX_FUNCTION_UNKNOWN'] },
    extra: async (c) => {
      const rows = await invocationsOf(c.tenant)
      const bad = rows.filter((r) => String(r.pool).includes('hostile-victim'))
      return bad.length ? [`a call went to the queue rule code named (${bad.map((r) => r.pool).join(', ')}): the host must derive it`] : []
    },
  },
  {
    name: 'action-cross-tenant-call', where: 'action', probe: 'cross-tenant-call', expect: { fails: ['PRX_FUNCTION_UNKNOWN'] },
    extra: async (c) => {
      const rows = await invocationsOf(c.tenant)
      return rows.some((r) => r.function === 'secret' && r.status === 'succeeded') ? ['the victim tenant\'s function ran for this tenant'] : []
    },
  },
  {
    // A child start resolves among the tenant's own services only: the start fails (fatal, for the
    // rule's error section) and the victim's workflow never starts.
    name: 'action-cross-tenant-start', where: 'action', probe: 'cross-tenant-start', expect: { failsOrCompletes: ['PRX_FUNCTION_FAILED'] },
    extra: async () => {
      const { rows } = await h.db.pool.query("select tenant_id, count(*)::int as n from praxis.instances where workflow = 'victimFlow' group by tenant_id")
      return rows.length ? [`victimFlow instances were started: ${JSON.stringify(rows)}`] : []
    },
  },
  { name: 'action-unknown-function', where: 'action', probe: 'unknown-function', expect: { fails: ['PRX_FUNCTION_UNKNOWN'] } },

  // --- reaction (runs where the function's result is recorded: a worker) --------------------
  { name: 'reaction-loop', where: 'reaction', probe: 'loop', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  { name: 'reaction-alloc', where: 'reaction', probe: 'alloc', busy: true, expect: { fails: ['PRX_RULE_MEMORY', 'PRX_RULE_TIMEOUT'] } },
  { name: 'reaction-microtask-loop', where: 'reaction', probe: 'microtask-loop', busy: true, expect: { failsOrCompletes: ['PRX_RULE_TIMEOUT', 'PRX_RULE_ASYNC'] } },
  { name: 'reaction-import-escape', where: 'reaction', probe: 'import-escape', expect: { completes: clean } },
  { name: 'reaction-function-ctors', where: 'reaction', probe: 'function-ctors', expect: { failsOrCompletes: ['PRX_RULE_THREW'] } },
  { name: 'reaction-clock', where: 'reaction', probe: 'clock', expect: { completes: clockCheck('event') } },
  counterCase('reaction-global-counter', 'global-counter', 'reaction'),
  { name: 'reaction-huge-calls', where: 'reaction', probe: 'huge-calls', expect: { fails: ['PRX_LIMIT_CALLS'] } },
  // The finding: facts nested 3,000 deep set in a worker-side reaction overflowed the worker's stack,
  // and the job was retried for days while the instance stayed running.
  { name: 'reaction-deep-facts', where: 'reaction', probe: 'deep-facts', expect: { fails: ['PRX_LIMIT_FACTS'] } },

  // --- error section (runs for a function that failed for good) -----------------------------
  { name: 'error-throw', where: 'error', probe: 'throw', expect: { fails: ['PRX_RULE_THREW'] } },
  { name: 'error-loop', where: 'error', probe: 'loop', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  { name: 'error-import-escape', where: 'error', probe: 'import-escape', expect: { completes: clean } },
  { name: 'error-prepare-stack', where: 'error', probe: 'prepare-stack', expect: { completes: clean } },
  { name: 'error-reject', where: 'error', probe: 'reject', expect: { failsOrCompletes: ['PRX_RULE_THREW', 'PRX_RULE_ASYNC'] } },

  // --- signal handler -----------------------------------------------------------------------
  { name: 'signal-loop', where: 'signal', probe: 'loop', busy: true, expect: { fails: ['PRX_RULE_TIMEOUT'] } },
  { name: 'signal-import-escape', where: 'signal', probe: 'import-escape', expect: { completes: clean } },
  { name: 'signal-pollute', where: 'signal', probe: 'pollute', expect: { failsOrCompletes: ['PRX_RULE_THREW'] } },
]

/** What the start (or signal) of a probe answered and what became of its instance. */
async function runProbe(c: Case, tenant: Tenant, ctx: RunContext): Promise<void> {
  const at: At = c.where === 'top' ? 'action' : c.where
  const problems = ctx.problems
  const start = async (): Promise<{ started: Reply; signalled?: Reply; settled?: { view: any; timeline: any[] } }> => {
    const started = await h.startProbe(tenant, c.probe, at)
    if (started.status !== 201) return { started }
    let signalled: Reply | undefined
    if (at === 'signal') signalled = await h.request('POST', `/v1/instances/${started.body.id}/signals/poke`, { payload: {} }, tenant.key)
    const settled = await h.settle(tenant, started.body.id, at === 'action' || at === 'init' ? 3000 : 20_000)
    return { started, ...(signalled ? { signalled } : {}), settled }
  }
  let outcome: Awaited<ReturnType<typeof start>>
  if (c.busy) {
    const measured = await h.healthWhile(start)
    outcome = measured.result
    if (measured.maxGapMs > BUSY_GAP_MS) problems.push(`/v1/health went unanswered for ${measured.maxGapMs} ms while the probe ran (rule code blocked the host's event loop)`)
    problems.push(...measured.failures)
  } else {
    outcome = await start()
  }
  const { started, signalled, settled } = outcome
  problems.push(...h.leaks(JSON.stringify([started.body, signalled?.body ?? null, settled ?? null])))
  const expectation = c.expect

  if (at === 'init' && started.status !== 201) {
    // A failed init answers the start with 4xx and creates no instance. The code may be in
    // error.code or error.details.code; PRX_BUNDLE_INVALID is allowed unless a wrong PRX_RULE_* code shows.
    const codes = [started.body?.error?.code, started.body?.error?.details?.code].filter((k): k is string => typeof k === 'string')
    const allowed = 'completes' in expectation ? [] : 'fails' in expectation ? expectation.fails : expectation.failsOrCompletes
    const right = codes.some((k) => allowed.includes(k)) || (codes.includes('PRX_BUNDLE_INVALID') && !codes.some((k) => /^PRX_RULE_/.test(k) && !allowed.includes(k)))
    if (allowed.length === 0) problems.push(`init: the start failed (${started.status} ${JSON.stringify(started.body).slice(0, 400)}) where the probe should complete`)
    else if (started.status < 400 || started.status >= 500 || !right) problems.push(`init: the start answered ${started.status} with codes ${JSON.stringify(codes)}, expected 4xx with ${allowed.join(' or ')}: ${JSON.stringify(started.body).slice(0, 400)}`)
    const list = await h.request('GET', '/v1/instances?workflow=probe&limit=10', undefined, tenant.key)
    if (list.body?.instances?.length) problems.push(`init failed but ${list.body.instances.length} instance(s) were created`)
    return
  }
  if (started.status !== 201) {
    problems.push(`the start answered ${started.status} ${JSON.stringify(started.body).slice(0, 600)}`)
    return
  }
  if (signalled && signalled.status !== 202) problems.push(`the signal answered ${signalled.status} ${JSON.stringify(signalled.body).slice(0, 400)}`)
  const view = settled?.view
  const timeline = settled?.timeline ?? []
  ctx.id = started.body.id
  ctx.view = view
  const code = codeOf(view?.error) ?? 'no code'
  const failedWith = (codes: string[]): string | null => {
    if (view?.status !== 'failed') return `the instance is ${view?.status}, expected failed with ${codes.join(' or ')} (facts.got: ${String(view?.facts?.got ?? '').slice(0, 300)})`
    if (!codes.includes(code)) return `the instance failed with ${code}, expected ${codes.join(' or ')}: ${String(view?.error?.message).slice(0, 400)}`
    const entry = timeline.find((e: any) => (e.kind === 'rule.failed' || e.kind === 'instance.failed') && JSON.stringify(e.data).includes(code))
    return entry ? null : `no rule.failed/instance.failed timeline entry carries ${code}`
  }
  if ('fails' in expectation) {
    const wrong = failedWith(expectation.fails)
    if (wrong) problems.push(wrong)
  } else if ('completes' in expectation) {
    if (view?.status !== 'completed') problems.push(`the instance is ${view?.status} (${codeOf(view?.error)}: ${String(view?.error?.message ?? '').slice(0, 400)}), expected it to complete`)
    else {
      const wrong = await expectation.completes(view.facts?.got, view, ctx)
      if (wrong) problems.push(wrong)
    }
  } else if (view?.status !== 'completed') {
    const wrong = failedWith(expectation.failsOrCompletes)
    if (wrong) problems.push(`${wrong} (or complete)`)
  }
}

it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
  const replaced = await h.ensureHost()
  void replaced
  const problems: string[] = []
  const tenant = await h.tenant(`probe-${c.name}`)
  const ctx: RunContext = { tenant, id: null, view: null, t0: Date.now(), problems }
  // Reaction and error probes need their function to run; so do a forged call the host accepts
  // (with the stored policy) and a child start, which a worker of the tenant attempts.
  const needsWorker = c.where === 'reaction' || c.where === 'error' || c.name === 'action-forged-retry' || c.name === 'action-cross-tenant-start'
  try {
    // 1. Deploy (the top-level probes wrap the good bundle's code).
    const code = c.top ? `${c.top.before ?? ''}\n${h.bundle.code}\n${c.top.after ?? ''}` : h.bundle.code
    const deploy = async (): Promise<Reply> => h.deploy(tenant, 'hostile', code, h.bundle.manifest)
    let deployed: Reply
    if (c.where === 'top' && c.busy) {
      const measured = await h.healthWhile(deploy)
      deployed = measured.result
      if (measured.maxGapMs > BUSY_GAP_MS) problems.push(`/v1/health went unanswered for ${measured.maxGapMs} ms while the bundle was deployed (its top-level code blocked the host's event loop)`)
      problems.push(...measured.failures)
    } else {
      deployed = await deploy()
    }
    problems.push(...h.leaks(JSON.stringify(deployed.body)))
    // A refused deploy answers PRX_BUNDLE_INVALID; details.code says why (PRX_RULE_TIMEOUT, …).
    const refused = deployed.status === 400 && deployed.body?.error?.code === 'PRX_BUNDLE_INVALID'
    if (c.top?.deploy === 'refused') {
      if (!refused) problems.push(`deploying the bundle answered ${deployed.status} ${JSON.stringify(deployed.body).slice(0, 400)}, expected 400 PRX_BUNDLE_INVALID`)
      const list = await h.request('GET', '/v1/services/hostile/deployments', undefined, tenant.key)
      if (list.body?.deployments?.length) problems.push(`a refused bundle was stored: ${JSON.stringify(list.body.deployments)}`)
    } else if (deployed.status !== 201 && !(c.top?.deploy === 'either' && refused)) {
      problems.push(`deploying answered ${deployed.status} ${JSON.stringify(deployed.body).slice(0, 400)}`)
    }

    // 2. The probe itself, and 3. the same tenant's next ordinary instance(s).
    if (deployed.status === 201) {
      if (needsWorker) await h.startWorker(tenant)
      await runProbe(c, tenant, ctx)
      if (c.extra) problems.push(...await c.extra(ctx))
      // A forged runtime stays forged for every instance of its bundle: its own probe covers it.
      const next = c.name === 'top-forged-runtime' ? ['init'] as At[] : c.where === 'top' ? ['action', 'init'] as At[] : [c.where]
      for (const at of next) problems.push(...await h.ordinary(tenant, at, `the same tenant's next instance (${at})`))
    }
  } catch (error) {
    problems.push(error instanceof NoAnswer ? `no answer: ${error.message}` : `error: ${(error as Error).stack ?? String(error)}`)
  } finally {
    if (needsWorker) await h.stopWorker(tenant)
  }

  // 4. The host is the same process, answers, and another tenant's workflow completes.
  if (!h.alive) problems.push(`the API process died: ${h.hostExit}`)
  else {
    const health = await h.health(5000)
    if (health.status !== 200) problems.push(`/v1/health after the probe: ${health.error ?? health.status}`)
    else {
      try {
        problems.push(...await h.honestRoundTrip())
      } catch (error) {
        problems.push(`honest tenant: ${(error as Error).message}`)
      }
      if (!h.alive) problems.push(`the API process died: ${h.hostExit}`)
    }
  }
  expect(problems, `probe ${c.name} (${c.where}: ${c.probe})`).toEqual([])
}, 180_000)

it('ten concurrent starts of a looping workflow fail only themselves and /v1/health keeps answering', async () => {
  await h.ensureHost()
  const problems: string[] = []
  const tenant = await h.tenant('probe-concurrent-loops')
  try {
    const deployed = await h.deploy(tenant, 'hostile', h.bundle.code, h.bundle.manifest)
    expect(deployed.status).toBe(201)
    const measured = await h.healthWhile(() => Promise.all(Array.from({ length: 10 }, () => h.startProbe(tenant, 'loop', 'action'))))
    if (measured.maxGapMs > BUSY_GAP_MS) problems.push(`/v1/health went unanswered for ${measured.maxGapMs} ms during ten looping starts`)
    problems.push(...measured.failures)
    for (const started of measured.result) {
      if (started.status !== 201) {
        problems.push(`a start answered ${started.status} ${JSON.stringify(started.body).slice(0, 300)}`)
        continue
      }
      const { view } = await h.settle(tenant, started.body.id, 10_000)
      if (view?.status !== 'failed' || codeOf(view?.error) !== 'PRX_RULE_TIMEOUT') problems.push(`an instance is ${view?.status} ${codeOf(view?.error)}, expected failed PRX_RULE_TIMEOUT`)
    }
  } catch (error) {
    problems.push(`no answer: ${(error as Error).message}`)
  }
  if (!h.alive) problems.push(`the API process died: ${h.hostExit}`)
  else problems.push(...await h.honestRoundTrip().catch((e: Error) => [`honest tenant: ${e.message}`]))
  expect(problems).toEqual([])
}, 180_000)

it('the probes left the victim tenant alone, and its own workflow still reads its secret', async () => {
  await h.ensureHost()
  const started = await h.request('POST', '/v1/workflows/victimFlow/instances', { input: {} }, h.victimTenant.key)
  expect(started.status).toBe(201)
  const { view } = await h.settle(h.victimTenant, started.body.id, 20_000)
  expect(view.status).toBe('completed')
  expect(view.facts.secret).toBe(VICTIM_SECRET)
  const { rows } = await h.db.pool.query("select tenant_id, count(*)::int as n from praxis.invocations where function = 'secret' and tenant_id <> $1 and status = 'succeeded' group by tenant_id", [h.victimTenant.id])
  expect(rows, 'the victim\'s function ran for other tenants').toEqual([])
}, 60_000)
