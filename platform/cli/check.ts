/**
 * `praxis check [dir…]`: the checks before a deploy, in one command, for each service folder:
 *
 * - **types**: the service's files type-checked with the TypeScript compiler, under its own
 *   `tsconfig.json` (its own folder's, else the nearest one above it, with the service's files as
 *   the roots whatever that config includes, else strict defaults);
 * - **fact paths and codegen**: `praxis codegen --check` (nothing is written): every rule's match
 *   paths and static `ctx.set` / `ctx.setPath` paths against its facts schema, everything codegen
 *   refuses, and generated files that are stale.
 *
 * Diagnostics print as `file:line:col: message [code]` with a count (or JSON with `--json`); the
 * exit code is 1 when there is an error. TypeScript is loaded only by this command.
 */
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import type tsModule from 'typescript'
import { codegen, CodegenError, FactPathError } from '../../codegen/index.js'
import { isService } from './services.js'

type TypeScript = typeof tsModule

/** One problem `praxis check` found. */
export interface CheckDiagnostic {
  /** The service folder, as given. */
  service: string
  /** What found it: the TypeScript compiler, the fact-path check, or the rest of codegen. */
  source: 'typescript' | 'fact-path' | 'codegen'
  severity: 'error' | 'warning'
  /** `TS2322`, `PRX_CODEGEN_FACT_PATH`, `PRX_CODEGEN_STALE`, … */
  code: string
  /** From the current folder; null when the problem has no place (an option, a build failure). */
  file: string | null
  line: number | null
  column: number | null
  message: string
}

/** What was checked in one service folder. */
export interface CheckedService {
  service: string
  /** The tsconfig.json its files were checked under, from the current folder; null for the defaults. */
  tsconfig: string | null
  /** How many files were the roots of the type check. */
  files: number
  errors: number
  warnings: number
}

/**
 * Strict defaults for a service with no tsconfig.json in its folder or above: the strictness the
 * repository's own services are written with, and the bundler's module resolution (the rules side
 * is bundled with esbuild; a folder with no package.json is no CommonJS package to it).
 */
function defaults(ts: TypeScript): tsModule.CompilerOptions {
  return {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    strict: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    esModuleInterop: true,
    skipLibCheck: true,
    resolveJsonModule: true,
    isolatedModules: true,
  }
}

/**
 * Runs the checks on each folder (the current one when none is given); returns the exit code.
 * `codegen: false` type-checks only (for a caller that has just run codegen on the folders).
 */
export async function runCheck(dirs: string[], options: { json?: boolean; codegen?: boolean }, out: (line: string) => void): Promise<number> {
  const ts = (await import('typescript')).default
  const folders = dirs.length > 0 ? dirs : ['.']
  const diagnostics: CheckDiagnostic[] = []
  const services: CheckedService[] = []
  for (const dir of folders) {
    const found: CheckDiagnostic[] = []
    const service = isService(dir)
    if (options.codegen !== false) found.push(...await codegenDiagnostics(dir))
    let typed = { tsconfig: null as string | null, files: 0 }
    if (service) {
      const checked = typeCheck(ts, dir)
      found.push(...checked.diagnostics)
      typed = { tsconfig: checked.tsconfig, files: checked.files }
    }
    diagnostics.push(...found)
    services.push({
      service: dir,
      ...typed,
      errors: found.filter((d) => d.severity === 'error').length,
      warnings: found.filter((d) => d.severity === 'warning').length,
    })
  }
  const errors = diagnostics.filter((d) => d.severity === 'error').length
  const warnings = diagnostics.length - errors
  if (options.json) {
    out(JSON.stringify({ ok: errors === 0, errors, warnings, services, diagnostics }, null, 2))
  } else {
    for (const d of diagnostics) out(formatDiagnostic(d))
    for (const s of services) {
      const how = s.files === 0 ? 'not type-checked' : `type-checked ${count(s.files, 'file')} with ${s.tsconfig ?? 'strict defaults (no tsconfig.json found)'}`
      out(`${s.service}: ${count(s.errors, 'error')}${s.warnings ? `, ${count(s.warnings, 'warning')}` : ''} (${how}; fact paths and generated files checked)`)
    }
    out(errors === 0
      ? `no errors${warnings ? ` (${count(warnings, 'warning')})` : ''} in ${count(services.length, 'service')}`
      : `${count(errors, 'error')}${warnings ? `, ${count(warnings, 'warning')}` : ''} in ${count(services.length, 'service')}: fix them before deploying`)
  }
  return errors === 0 ? 0 : 1
}

/** `file:line:col: message [code]`, the message's further lines indented under it. */
export function formatDiagnostic(d: CheckDiagnostic): string {
  const place = d.file === null ? d.service : `${d.file}${d.line === null ? '' : `:${d.line}:${d.column ?? 1}`}`
  const [first = '', ...rest] = d.message.split('\n')
  return [`${place}: ${d.severity === 'warning' ? 'warning: ' : ''}${first} [${d.code}]`, ...rest.map((line) => `  ${line.trimStart()}`)].join('\n')
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`
}

/** `praxis codegen --check`: fact paths, what codegen refuses, stale generated files. */
async function codegenDiagnostics(dir: string): Promise<CheckDiagnostic[]> {
  const base = { service: dir, severity: 'error' as const }
  try {
    const result = await codegen({ dir, check: true })
    return result.files.filter((f) => f.state === 'stale').map((f) => ({
      ...base, source: 'codegen' as const, code: 'PRX_CODEGEN_STALE', file: path.join(dir, f.path), line: null, column: null,
      message: `generated file is stale (the source generates something else): run \`praxis codegen ${dir}\`; a deploy refuses stale generated files`,
    }))
  } catch (error) {
    if (error instanceof FactPathError) {
      return error.issues.map((issue) => ({ ...base, source: 'fact-path' as const, code: error.code, file: issue.file, line: issue.line, column: issue.column, message: issue.message }))
    }
    if (error instanceof CodegenError) {
      // Codegen's messages start with `file:line: ` (from the current folder) when they have a place.
      const place = /^(\S+?):(\d+): ([\s\S]*)$/.exec(error.message)
      return [place
        ? { ...base, source: 'codegen', code: error.code, file: place[1]!, line: Number(place[2]), column: 1, message: place[3]! }
        : { ...base, source: 'codegen', code: error.code, file: null, line: null, column: null, message: error.message }]
    }
    const code = (error as { code?: unknown }).code
    return [{ ...base, source: 'codegen', code: typeof code === 'string' ? code : 'error', file: null, line: null, column: null, message: `codegen could not read or build the service: ${(error as Error).message}` }]
  }
}

/** The service's files type-checked under its tsconfig (see the module comment for which). */
function typeCheck(ts: TypeScript, dir: string): { diagnostics: CheckDiagnostic[]; tsconfig: string | null; files: number } {
  const absolute = path.resolve(dir)
  const own = path.join(absolute, 'tsconfig.json')
  const configFile = existsSync(own) ? own : ts.findConfigFile(path.dirname(absolute), (file) => ts.sys.fileExists(file), 'tsconfig.json') ?? null
  const problems: tsModule.Diagnostic[] = []
  let options = defaults(ts)
  let roots = serviceFiles(absolute)
  if (configFile) {
    const host: tsModule.ParseConfigFileHost = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => void problems.push(d) }
    const parsed = ts.getParsedCommandLineOfConfigFile(configFile, undefined, host)
    if (parsed) {
      options = parsed.options
      if (configFile === own) {
        roots = parsed.fileNames
        problems.push(...parsed.errors)
      } else {
        // A config above the service: its options, the service's files (its include may not list a new folder).
        problems.push(...parsed.errors.filter((d) => d.code !== 18003))
      }
    }
  }
  // Checking, not building: no output, no build info, and roots outside a composite project's list are fine.
  options = { ...options, noEmit: true, emitDeclarationOnly: false, incremental: false, composite: false, tsBuildInfoFile: undefined, outDir: undefined, declarationDir: undefined }
  const program = ts.createProgram({ rootNames: roots, options, configFileParsingDiagnostics: problems })
  const found: tsModule.Diagnostic[] = [...problems, ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
  for (const root of roots) {
    const file = program.getSourceFile(root)
    if (!file) continue
    found.push(...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file))
  }
  const seen = new Set<string>()
  const diagnostics: CheckDiagnostic[] = []
  for (const d of found) {
    if (d.category !== ts.DiagnosticCategory.Error && d.category !== ts.DiagnosticCategory.Warning) continue
    const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null
    const diagnostic: CheckDiagnostic = {
      service: dir,
      source: 'typescript',
      severity: d.category === ts.DiagnosticCategory.Error ? 'error' : 'warning',
      code: `TS${d.code}`,
      file: d.file ? path.relative(process.cwd(), d.file.fileName) : configFile && d.file === undefined && problems.includes(d) ? path.relative(process.cwd(), configFile) : null,
      line: at ? at.line + 1 : null,
      column: at ? at.character + 1 : null,
      message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    }
    const key = JSON.stringify([diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.code, diagnostic.message])
    if (seen.has(key)) continue
    seen.add(key)
    diagnostics.push(diagnostic)
  }
  return { diagnostics, tsconfig: configFile ? path.relative(process.cwd(), configFile) || 'tsconfig.json' : null, files: roots.length }
}

/** The service's TypeScript files (generated/ included): not node_modules, dot-folders or symlinked folders. */
function serviceFiles(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) out.push(...serviceFiles(file))
    } else if (entry.isFile() && /\.(c|m)?tsx?$/.test(entry.name)) out.push(file)
  }
  return out.sort()
}
