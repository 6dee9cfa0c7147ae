/**
 * The `praxis` command.
 *
 *   praxis dev [service-dir…]        embedded PostgreSQL + API + worker pool; deploys the examples
 *   praxis worker <service-dir…> --tenant ID   a worker process for one tenant's function pools of the services
 *   praxis pools <service-dir…> --tenant ID    min..max warm worker processes per pool, scaled on the queues
 *   praxis deploy <service-dir>      builds and deploys a service's rules bundle
 *   praxis codegen [service-dir…]    writes generated/ (stubs, workflow refs, API client, manifest)
 *   praxis start <workflow> --input '<json>' [--wait]
 *   praxis inspect <instance-id>
 *   praxis tenants create <name> [--id ID] | tenants list
 *   praxis tenants retention <tenant> [--finished-days N|off|default] [--events-days …] [--running-timeline-days …] [--purge]
 *   praxis keys create --tenant ID [--label L] | keys list --tenant ID | keys revoke <key-id>
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { codegen, CodegenError, fetchManifest } from '../../codegen/index.js'
import { loadConfig } from '../config.js'
import { buildBundle, readGeneratedManifest } from '../engine/index.js'
import { loadService } from '../pools/index.js'
import { ApiError, apiClient, resolveApiKey } from './client.js'
import { runDev } from './dev.js'
import { runPools, wholeFlag } from './pools.js'
import { followRun, printChanges, printPreview } from './deploys.js'
import { follow } from './progress.js'
import { runWorker } from './worker.js'

const USAGE = `usage:
  praxis dev [service-dir…]                      start everything locally (default: every folder in examples/); its
                                                 workers: --min N (or --workers N) .. --max N per function pool, default 1..2
  praxis worker <service-dir…> --tenant ID       run a worker for one tenant's jobs of these services' functions (or --api-key KEY,
                                                 PRAXIS_TENANT, PRAXIS_API_KEY; needs DATABASE_URL or a running praxis dev);
                                                 --pool SERVICE:POOL serves only that pool
  praxis pools <service-dir…> --tenant ID [--min N] [--max N] [--idle-ms MS]
                                                 keep min..max (default 1..4) warm workers per function pool, scaled up on
                                                 queue depth and age, down when idle, restarted when they die
  praxis deploy <service-dir> [--dry-run] [--wait] [--server URL]
                                                 build and deploy a service's rules bundle; running work reaches the added and
                                                 changed rules in the background (--wait: a progress bar until done);
                                                 --dry-run: the rules added, changed and removed, and the instances each would
                                                 fire on now, changing nothing
  praxis rollback <service> [version] [--dry-run] [--wait]
                                                 make an older version's rules active again (default: the one before), as a deploy
  praxis codegen [service-dir…] [--check]       write each service's generated/ folder (stubs, workflow refs, API client, manifest);
                                                 --check writes nothing and fails naming every stale file
  praxis codegen <service-dir> --from URL --service NAME   layer another deployed service (typed stubs, refs, client)
  praxis codegen <service-dir> --manifest FILE             the same from a manifest file
  praxis start <workflow> --input '<json>' [--wait] [--idempotency-key K] [--server URL]
  praxis inspect <instance-id> [--server URL]
  praxis tenants create <name> [--id ID]        add a tenant (the id defaults to a slug of the name)
  praxis tenants list
  praxis tenants retention <tenant> [--finished-days N] [--events-days N] [--running-timeline-days N] [--purge]
                                                 show or set how long the tenant's finished data is kept (days; off: for ever;
                                                 default: the platform's PRAXIS_RETAIN_*); --purge purges now
  praxis keys create --tenant ID [--label L]    make an API key; it is printed once and cannot be shown again
  praxis keys list --tenant ID                   key ids, labels, created and revoked times (never secrets)
  praxis keys revoke <key-id>                    refuse the key from the next request on
  (tenants and keys use the database directly: DATABASE_URL, else the embedded PostgreSQL of a running praxis dev)
common: --api-key KEY (or PRAXIS_API_KEY), --server URL (default http://127.0.0.1:3000)`

const out = (line: string): void => void process.stdout.write(line + '\n')

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      input: { type: 'string' },
      wait: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      'idempotency-key': { type: 'string' },
      server: { type: 'string' },
      'api-key': { type: 'string' },
      'timeout-ms': { type: 'string', default: '600000' },
      'no-demo': { type: 'boolean', default: false },
      workers: { type: 'string', default: '1' },
      // praxis pools and praxis dev: workers per pool; praxis worker --pool: the pools it serves.
      min: { type: 'string' },
      max: { type: 'string' },
      'idle-ms': { type: 'string' },
      pool: { type: 'string', multiple: true },
      check: { type: 'boolean', default: false },
      from: { type: 'string' },
      service: { type: 'string' },
      manifest: { type: 'string' },
      // --tenant: praxis worker's tenant, and praxis keys create/list's.
      tenant: { type: 'string' },
      id: { type: 'string' },
      label: { type: 'string' },
      // praxis tenants retention: days, off or default; --purge purges now.
      'finished-days': { type: 'string' },
      'events-days': { type: 'string' },
      'running-timeline-days': { type: 'string' },
      purge: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (!command || values.help || command === 'help') {
    out(USAGE)
    return command ? 0 : 2
  }
  const config = loadConfig()
  const server = values.server ?? `http://${config.host}:${config.port}`
  const api = async () => apiClient(server, await resolveApiKey(values['api-key'], config.dataDir))

  switch (command) {
    case 'dev':
      return runDev(config, { services: positionals, demo: !values['no-demo'], workers: Number(values.workers), min: wholeFlag('min', values.min), max: wholeFlag('max', values.max), idleMs: wholeFlag('idle-ms', values['idle-ms']) })
    case 'worker':
      if (positionals.length === 0) throw new Error('praxis worker needs at least one service folder, e.g. praxis worker examples/video-encoding')
      return runWorker(config, positionals, { tenant: values.tenant, apiKey: values['api-key'] }, { pools: values.pool })
    case 'pools':
      if (positionals.length === 0) throw new Error('praxis pools needs at least one service folder, e.g. praxis pools examples/video-encoding --tenant acme')
      return runPools(config, positionals, { tenant: values.tenant, apiKey: values['api-key'], min: wholeFlag('min', values.min), max: wholeFlag('max', values.max), idleMs: wholeFlag('idle-ms', values['idle-ms']) }, out)
    case 'deploy': {
      const dir = positionals[0]
      if (!dir) throw new Error('praxis deploy needs a service folder, e.g. praxis deploy examples/video-encoding')
      const service = await loadService(dir)
      // Never deploy rules built on stale stubs, nor a manifest other services would layer on stale.
      const checked = await codegen({ dir, check: true })
      const stale = checked.files.filter((f) => f.state === 'stale').map((f) => path.join(dir, f.path))
      if (stale.length > 0) throw new CodegenError('PRX_CODEGEN_STALE', `generated code of ${service.name} is stale (${stale.join(', ')}): run \`praxis codegen ${dir}\`, then deploy`)
      const { code } = await buildBundle(dir)
      const manifest = await readGeneratedManifest(dir)
      const client = await api()
      if (values['dry-run']) {
        const preview = await client.request('POST', `/v1/services/${service.name}/deployments?dryRun=true`, { code, ...(manifest ? { manifest } : {}) })
        printPreview(preview, out)
        return 0
      }
      const deployed = await client.request('POST', `/v1/services/${service.name}/deployments`, { code, ...(manifest ? { manifest } : {}) })
      out(`${deployed.created ? 'deployed' : 'unchanged'}: ${service.name} version ${deployed.version} (${deployed.workflows.map((w: { name: string }) => w.name).join(', ')})`)
      printChanges(deployed.changes ?? [], out)
      if (deployed.unservedPools?.length) out(`note: no worker serves pool ${deployed.unservedPools.join(', ')} yet, so calls of its functions wait: run \`praxis worker ${dir} --tenant <tenant>\` (or \`praxis pools ${dir} --tenant <tenant>\`, or \`praxis dev ${dir}\`)`)
      if (deployed.reprocessing) return followRun(client, service.name, deployed.reprocessing, out, { wait: values.wait, timeoutMs: Number(values['timeout-ms']) })
      return 0
    }
    case 'rollback': {
      const service = positionals[0]
      if (!service) throw new Error('praxis rollback needs a service name, e.g. praxis rollback video-encoding (the version before the active one) or praxis rollback video-encoding 3')
      const version = positionals[1] === undefined ? undefined : Number(positionals[1])
      if (version !== undefined && !(Number.isInteger(version) && version > 0)) throw new Error(`praxis rollback: version ${positionals[1]} is not a version number (see GET /v1/services/${service}/deployments)`)
      const client = await api()
      const body = version === undefined ? {} : { version }
      if (values['dry-run']) {
        printPreview(await client.request('POST', `/v1/services/${service}/rollback?dryRun=true`, body), out)
        return 0
      }
      const rolled = await client.request('POST', `/v1/services/${service}/rollback`, body)
      out(`rolled back: ${service} version ${rolled.version} is active, with the rules of version ${rolled.from}`)
      printChanges(rolled.changes ?? [], out)
      if (rolled.reprocessing) return followRun(client, service, rolled.reprocessing, out, { wait: values.wait, timeoutMs: Number(values['timeout-ms']) })
      return 0
    }
    case 'codegen': {
      const dirs = positionals.length > 0 ? positionals : ['.']
      let layer: { manifest: unknown; origin: string } | undefined
      if (values.from || values.manifest) {
        if (dirs.length > 1) throw new Error('--from and --manifest add a layer to one service: name one service folder')
        if (values.from) {
          if (!values.service) throw new Error('--from needs --service NAME, the deployed service to layer, e.g. --from http://127.0.0.1:3000 --service video-encoding')
          layer = { manifest: await fetchManifest(values.from, values.service, await resolveApiKey(values['api-key'], config.dataDir)), origin: `${values.from} (service ${values.service})` }
        } else {
          const file = values.manifest!
          const text = await readFile(file, 'utf8').catch((error: Error) => { throw new Error(`cannot read --manifest ${file}: ${error.message}`) })
          try {
            layer = { manifest: JSON.parse(text), origin: file }
          } catch (error) {
            throw new Error(`--manifest ${file} is not JSON: ${(error as Error).message}`, { cause: error })
          }
        }
      }
      const stale: string[] = []
      for (const dir of dirs) {
        const t0 = Date.now()
        const result = await codegen({ dir, check: values.check, ...(layer ? { layer } : {}), onProgress: (line) => process.stderr.write(line + '\n') })
        const count = (state: string) => result.files.filter((f) => f.state === state).length
        for (const f of result.files.filter((f) => f.state === 'stale')) stale.push(path.join(dir, f.path))
        const n = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`
        out(`${result.service}: ${n(result.functions, 'function')}, ${n(result.workflows, 'workflow')}${result.layers.length ? `, layered on ${result.layers.join(', ')}` : ''}; `
          + `${n(result.files.length, 'file')}: ${values.check ? `${count('stale')} stale` : `${count('written')} written, ${count('removed')} removed`}, ${count('unchanged')} unchanged (${Date.now() - t0} ms)`)
      }
      if (stale.length > 0) {
        for (const file of stale) out(`stale: ${file}`)
        throw new CodegenError('PRX_CODEGEN_STALE', `${stale.length} generated file${stale.length === 1 ? ' is' : 's are'} stale: run \`praxis codegen ${dirs.join(' ')}\` and commit the result`)
      }
      return 0
    }
    case 'start': {
      const workflow = positionals[0]
      if (!workflow) throw new Error("praxis start needs a workflow name, e.g. praxis start encodeVideo --input '{\"source\":\"s3://in.mov\",\"recipe\":\"h264\"}'")
      let input: unknown = {}
      try {
        input = values.input === undefined ? {} : JSON.parse(values.input)
      } catch (error) {
        throw new Error(`--input is not valid JSON (${(error as Error).message}); quote it: --input '{"source":"s3://in.mov"}'`, { cause: error })
      }
      const client = await api()
      const started = await client.request('POST', `/v1/workflows/${encodeURIComponent(workflow)}/instances`, { input, ...(values['idempotency-key'] ? { idempotencyKey: values['idempotency-key'] } : {}) })
      out(`${started.created ? 'started' : 'already started (same idempotency key)'}: ${started.id}`)
      if (!values.wait) return 0
      const final = await follow(client, started.id, out, { timeoutMs: Number(values['timeout-ms']) })
      out(`status: ${final.status}`)
      out(`facts: ${JSON.stringify(final.facts, null, 2)}`)
      if (final.result !== null) out(`result: ${JSON.stringify(final.result)}`)
      if (final.error !== null) out(`error: ${JSON.stringify(final.error)}`)
      return final.status === 'completed' ? 0 : 1
    }
    case 'inspect': {
      const id = positionals[0]
      if (!id) throw new Error('praxis inspect needs an instance id')
      const client = await api()
      const instance = await client.request('GET', `/v1/instances/${id}`)
      out(`instance ${instance.id}  ${instance.service}.${instance.workflow}  status ${instance.status}  revision ${instance.revision}  bundle v${instance.bundleVersion}`)
      out(`facts: ${JSON.stringify(instance.facts, null, 2)}`)
      if (instance.result !== null) out(`result: ${JSON.stringify(instance.result)}`)
      if (instance.error !== null) out(`error: ${JSON.stringify(instance.error)}`)
      for (const w of instance.waiting ?? []) out(`waiting: ${w.reason}: ${w.fix}`)
      out('timeline:')
      let after = ''
      for (;;) {
        const page = await client.request('GET', `/v1/instances/${id}/timeline?limit=1000${after ? `&after=${after}` : ''}`)
        for (const e of page.entries) out(`  #${e.id} r${e.revision} ${e.at}  ${e.kind}${e.rule ? ` ${e.rule}` : ''}  ${JSON.stringify(e.data)}`)
        if (!page.nextCursor) break
        after = page.nextCursor
      }
      return 0
    }
    case 'tenants':
    case 'keys': {
      // Imported here: the other commands should not pay for loading it.
      const { runAdmin } = await import('./admin.js')
      return runAdmin(config, command, {
        positionals, id: values.id, tenant: values.tenant, label: values.label,
        finishedDays: values['finished-days'], eventsDays: values['events-days'], runningTimelineDays: values['running-timeline-days'], purge: values.purge,
      }, out)
    }
    default:
      out(`unknown command ${command}\n${USAGE}`)
      return 2
  }
}

// Exit explicitly once output is flushed: the tsx loader's handles would otherwise keep the
// exit code from reaching the shell.
const exit = (code: number): void => void process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))

main(process.argv.slice(2)).then(exit, (error: unknown) => {
  if (error instanceof ApiError) process.stderr.write(`error ${error.status} ${error.body?.error?.code ?? ''}: ${error.message}\n${error.body?.error?.details ? JSON.stringify(error.body.error.details, null, 2) + '\n' : ''}`)
  else process.stderr.write(`error: ${(error as Error).message}\n`)
  exit(1)
})
