/**
 * Which folders are services: the ones named, else the project's (`findServices`). `praxis dev`,
 * `praxis check` and `praxis codegen` take the same default. Only node: modules here.
 */
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'


/** The services `praxis dev` runs, and how they were found (said at start-up). */
export interface DevServices {
  /** Absolute folders. */
  dirs: string[]
  how: string
  /** Found by looking under the current folder: new service folders are picked up while it runs. */
  discover: boolean
}

export const SERVICE_IS = 'a service is a folder with a workflows.ts (its rules) and a functions.ts (its functions)'
export const NO_SERVICE = `${SERVICE_IS}: create one and praxis dev picks it up, or name folders: praxis dev <service-dir…>`
export const SERVICE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,99}$/
export const isService = (dir: string): boolean => existsSync(path.join(dir, 'workflows.ts')) || existsSync(path.join(dir, 'functions.ts'))
/** Folders never looked into, nor watched: dependencies, generated code, dot folders (.git, .praxis). */
export const skipped = (name: string): boolean => name === 'node_modules' || name === 'generated' || name.startsWith('.')
export const shown = (file: string): string => path.relative(process.cwd(), file) || '.'

/**
 * The services of the project in `root`, when `praxis dev` is given no folder:
 * - the folders its package.json lists under `"praxis": { "services": [...] }`, when it has that list;
 * - else `root` itself, when it holds a workflows.ts or functions.ts;
 * - else each folder one or two levels down that holds one (`./billing`, `./services/billing`,
 *   `./examples/video-encoding`), not looking in node_modules, generated/ or dot folders, nor
 *   below a service. New ones are picked up while dev runs.
 * A service's name is its folder's: two folders of one name are refused (name the folders, or list them).
 */
export async function findServices(root: string): Promise<DevServices> {
  const manifest = path.join(root, 'package.json')
  if (existsSync(manifest)) {
    let listed: unknown
    try {
      listed = (JSON.parse(await readFile(manifest, 'utf8')) as { praxis?: { services?: unknown } } | null)?.praxis?.services
    } catch {
      listed = undefined // not ours to report: npm says what is wrong with it
    }
    if (listed !== undefined) {
      if (!Array.isArray(listed) || !listed.every((d): d is string => typeof d === 'string')) throw new Error(`${shown(manifest)}: "praxis.services" must be a list of service folders, e.g. ["services/billing", "services/mail"]`)
      return { dirs: checkServices(listed.map((d) => path.resolve(root, d)), `listed in ${shown(manifest)} "praxis.services"`), how: `listed in ${shown(manifest)} "praxis.services"`, discover: false }
    }
  }
  if (isService(root)) return { dirs: checkServices([path.resolve(root)], 'the current folder'), how: 'the current folder', discover: false }
  const dirs: string[] = []
  for (const first of await subfolders(root)) {
    if (isService(first)) dirs.push(first)
    else for (const second of await subfolders(first)) if (isService(second)) dirs.push(second)
  }
  return { dirs: checkServices(dirs.sort(), `found under ${shown(root)}`), how: `folders with a workflows.ts or functions.ts, one or two levels under ${shown(root)}`, discover: true }
}

/** The folders named on the command line, checked. */
export async function namedServices(dirs: readonly string[]): Promise<DevServices> {
  return { dirs: checkServices(dirs.map((d) => path.resolve(d)), 'named'), how: 'named', discover: false }
}

/** Each folder holds a service, and no two have one name. */
function checkServices(dirs: readonly string[], how: string): string[] {
  const byName = new Map<string, string>()
  for (const dir of dirs) {
    if (!isService(dir)) throw new Error(`${shown(dir)} (${how}) holds no workflows.ts or functions.ts: ${existsSync(dir) ? 'name a service folder' : 'there is no such folder'} (${SERVICE_IS})`)
    const name = path.basename(dir)
    if (!SERVICE_NAME.test(name)) throw new Error(`${shown(dir)} (${how}): a service is named after its folder, and ${JSON.stringify(name)} is not a service name (letters, digits, "_" and "-", starting with a letter): rename the folder`)
    const other = byName.get(name)
    if (other && other !== dir) throw new Error(`${shown(other)} and ${shown(dir)} (${how}) would both deploy as service ${name}: name the folders to run (praxis dev ${shown(other)} …), or list them in package.json "praxis": { "services": [...] }`)
    byName.set(name, dir)
  }
  return [...new Set(dirs)]
}

async function subfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isDirectory() && !skipped(e.name)).map((e) => path.join(dir, e.name)).sort()
}

