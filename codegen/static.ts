/**
 * Reads a service's source with ts-morph: finds every `defineFunction` and `defineWorkflow` call,
 * wherever it is declared and however it is exported, and reads each function's name, pool,
 * policies and zod schemas *statically*: the schema expressions are interpreted over a whitelist
 * of zod builders with literal arguments (or consts holding them, in any file), never by running
 * the module. Function modules hold I/O and heavy dependencies; codegen must not execute them.
 */
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { Node, Project, SyntaxKind, ts, VariableDeclarationKind, type CallExpression, type Expression } from 'ts-morph'
import { z } from 'zod'
import { formatIssues } from '../sdk/context.js'
import { byCodePoint, ManifestFunction } from '../sdk/manifest.js'
import { CodegenError } from './errors.js'
import { SourceDigests, type StaticRule } from './fingerprint.js'

/** A function as codegen read it. Schemas are JSON Schemas (zod's, `io: 'input'`). */
export interface StaticFunction {
  name: string
  pool: string
  timeoutMs: number
  retry: { attempts: number; backoff: 'exponential' | 'fixed'; initialDelayMs: number; maxDelayMs: number }
  input: JsonSchema
  output: JsonSchema
  /** `file:line`, the file relative to the service folder (what the manifest records). */
  source: string
}

/**
 * A workflow as codegen found it: its schemas, and its rules' names, priorities and matches, come
 * from the built bundle; `rules` is the code of each rule chain found in its source (fingerprint.ts).
 */
export interface StaticWorkflow { name: string; source: string; rules: StaticRule[] }

/** Where a definition is, as error messages give it (the path from the current folder). */
export type Located<T> = T & { location: string }

export type JsonSchema = Record<string, unknown>

export interface ServiceSource {
  functions: Located<StaticFunction>[]
  workflows: Located<StaticWorkflow>[]
  /** How the service's source imports the SDK (a package name or a path relative to `dir`). */
  sdkImport: string | null
}

/** zod builders codegen can read, and how each maps to JSON Schema (all of them do). */
const ZOD_BUILDERS = new Set([
  'string', 'number', 'int', 'boolean', 'null', 'literal', 'enum', 'array', 'object', 'strictObject', 'looseObject', 'record',
  'partialRecord', 'union', 'discriminatedUnion', 'tuple', 'optional', 'nullable', 'nullish', 'unknown', 'any', 'email', 'url', 'uuid', 'iso',
])
const ISO_BUILDERS = new Set(['datetime', 'date', 'time'])
const SCHEMA_METHODS = new Set([
  'optional', 'nullable', 'nullish', 'default', 'min', 'max', 'length', 'int', 'positive', 'nonnegative', 'negative', 'nonpositive',
  'gt', 'gte', 'lt', 'lte', 'multipleOf', 'describe', 'email', 'url', 'uuid', 'regex', 'startsWith', 'endsWith', 'includes', 'datetime',
  'array', 'strict', 'passthrough', 'strip', 'extend', 'partial', 'required', 'pick', 'omit', 'merge', 'or', 'nonempty',
])
const SCHEMA_PROPERTIES = new Set(['shape', 'element', 'options'])
/** zod features with no JSON Schema (or no data) form: a stub could not carry them. */
const INEXPRESSIBLE = new Set([
  'refine', 'superRefine', 'transform', 'pipe', 'preprocess', 'custom', 'instanceof', 'date', 'bigint', 'map', 'set', 'function',
  'promise', 'symbol', 'lazy', 'catch', 'check', 'overwrite', 'brand', 'file', 'nan', 'never', 'void', 'undefined', 'trim', 'toLowerCase', 'toUpperCase',
])

const ZOD_NAMESPACE = Symbol('zod namespace')
const ISO_NAMESPACE = Symbol('zod iso namespace')

/**
 * A whitelisted zod method bound to a schema: only the interpreter makes these (a private class,
 * so source code cannot forge one), and it checks both again before calling.
 */
class SchemaMethod {
  constructor(readonly name: string, readonly of: z.ZodType) {}
  call(args: unknown[]): unknown {
    if (!SCHEMA_METHODS.has(this.name) || !(this.of instanceof z.ZodType)) throw new Error(`not a zod method: ${this.name}`)
    return (this.of as unknown as Record<string, (...a: unknown[]) => unknown>)[this.name]!.apply(this.of, args)
  }
}
/** The zod builders the interpreter handed out: the only functions it ever calls. */
const BUILDERS = new WeakSet<object>()

/** Reads every function and workflow definition under `dir` (not `generated/`, tests or node_modules). */
export function readService(dir: string): ServiceSource {
  const service = path.basename(path.resolve(dir))
  // Symbols only, no types: no lib files, and only the service's own files and the SDK are
  // resolved (zod is recognised by its import, never loaded). This keeps a large service fast.
  const project = new Project({
    compilerOptions: { allowJs: false, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noLib: true, types: [], noEmit: true },
    skipAddingFilesFromTsConfig: true,
    resolutionHost: (host, getOptions) => ({
      resolveModuleNames: (names, containingFile) => names.map((name) =>
        /^[./]/.test(name) || /^praxis(\/|$)/.test(name) ? ts.resolveModuleName(name, containingFile, getOptions(), host).resolvedModule : undefined),
    }),
  })
  const files = sourceFiles(dir).sort(byCodePoint).map((file) => project.addSourceFileAtPath(file))
  const reader = new StaticReader(dir)
  const functions: Located<StaticFunction>[] = []
  const workflows: Located<StaticWorkflow>[] = []
  let sdkImport: string | null = null
  // Each definition's identity, by its call: a rule referring to another workflow counts by name.
  const definitions = new Map<ts.Node, string>()
  const workflowCalls: CallExpression[] = []
  for (const file of files) {
    for (const call of file.getDescendantsOfKind(SyntaxKind.CallExpression)) {
      const kind = sdkCallee(call)
      if (!kind) continue
      sdkImport ??= kind.module
      if (kind.name === 'defineFunction') {
        const fn = reader.readFunction(call)
        functions.push(fn)
        definitions.set(call.compilerNode, `fn-def:${service}.${fn.name}`)
      } else {
        const wf = reader.readWorkflow(call)
        workflows.push(wf)
        workflowCalls.push(call)
        definitions.set(call.compilerNode, `wf:${service}.${wf.name}`)
      }
    }
  }
  const digests = new SourceDigests({ checker: project.getTypeChecker().compilerObject, dir, service, definitions })
  workflowCalls.forEach((call, i) => {
    workflows[i]!.rules = digests.rulesOf(call.compilerNode)
  })
  duplicates(functions, 'function', 'functions are called by name, so names must be unique in a service')
  duplicates(workflows, 'workflow', 'workflows are started by name, so names must be unique in a service')
  return {
    functions: functions.sort((a, b) => byCodePoint(a.name, b.name)),
    workflows: workflows.sort((a, b) => byCodePoint(a.name, b.name)),
    sdkImport,
  }

  function sdkCallee(call: CallExpression): { name: 'defineFunction' | 'defineWorkflow'; module: string } | null {
    const callee = call.getExpression()
    const name = Node.isIdentifier(callee) ? callee.getText() : Node.isPropertyAccessExpression(callee) ? callee.getName() : null
    if (name !== 'defineFunction' && name !== 'defineWorkflow' && !Node.isIdentifier(callee)) return null
    const symbol = callee.getSymbol()
    if (!symbol) return null
    const target = symbol.isAlias() ? symbol.getAliasedSymbol() ?? symbol : symbol
    const real = target.getName()
    const declaration = target.getDeclarations()[0]
    if (!declaration) {
      // Imported under that name from a module that does not resolve: say so rather than find nothing.
      if (name !== 'defineFunction' && name !== 'defineWorkflow') return null
      const from = importModuleOf(callee)
      if (from === null) return null
      throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `${name} is imported from ${JSON.stringify(from)}, which does not resolve: fix the import of the Praxis SDK`, reader.whereAbsolute(call))
    }
    if (real !== 'defineFunction' && real !== 'defineWorkflow') return null
    if (!/[/\\]sdk[/\\](function|workflow)\.(d\.)?[cm]?[jt]s$|[/\\]praxis[/\\]/.test(declaration.getSourceFile().getFilePath())) return null
    return { name: real, module: importModuleOf(callee) ?? '' }
  }

  /** The module specifier the callee (or its namespace) was imported from, relative to `dir`. */
  function importModuleOf(callee: Expression): string | null {
    const id = Node.isPropertyAccessExpression(callee) ? callee.getExpression() : callee
    const declaration = id.getSymbol()?.getDeclarations()[0]
    const importDecl = declaration?.getFirstAncestorByKind(SyntaxKind.ImportDeclaration)
    if (!importDecl) return null
    const specifier = importDecl.getModuleSpecifierValue()
    if (!specifier.startsWith('.')) return specifier
    const absolute = path.resolve(path.dirname(importDecl.getSourceFile().getFilePath()), specifier)
    const relative = path.relative(dir, absolute).split(path.sep).join('/')
    return relative.startsWith('.') ? relative : `./${relative}`
  }
}

/**
 * The service's own TypeScript files: not generated/, node_modules, dot-folders, tests or
 * declarations, and never through a symlinked folder (which may lead anywhere, even in a loop).
 */
function sourceFiles(dir: string, top = dir): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name.startsWith('.') || (dir === top && entry.name === 'generated')) continue
      out.push(...sourceFiles(file, top))
    } else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(file)
  }
  return out
}

function duplicates(defs: { name: string; location: string }[], what: string, why: string): void {
  const seen = new Map<string, string>()
  for (const def of defs) {
    const first = seen.get(def.name)
    if (first) throw new CodegenError('PRX_CODEGEN_DUPLICATE', `two ${what}s are named ${JSON.stringify(def.name)} (the other is at ${first}): ${why}; rename one`, def.location)
    seen.set(def.name, def.location)
  }
}

/** Interprets the static subset of TypeScript that definitions and schemas are written in. */
class StaticReader {
  readonly #evaluating = new Set<Node>()
  readonly #cache = new Map<Node, unknown>()

  constructor(private readonly dir: string) {}

  where(node: Node): string {
    const file = path.relative(this.dir, node.getSourceFile().getFilePath()).split(path.sep).join('/')
    return `${file}:${node.getStartLineNumber()}`
  }

  /** Where to point a person at: the path as given from the current folder. */
  whereAbsolute(node: Node): string {
    return `${path.relative(process.cwd(), node.getSourceFile().getFilePath())}:${node.getStartLineNumber()}`
  }

  readFunction(call: CallExpression): Located<StaticFunction> {
    const props = this.optionsOf(call, 'defineFunction')
    const at = this.whereAbsolute(call)
    const name = this.required(props, 'name', call, 'string') as string
    const pool = props.has('pool') ? this.literalOf(props.get('pool')!, 'string') as string : 'default'
    const timeoutMs = props.has('timeoutMs') ? this.literalOf(props.get('timeoutMs')!, 'number') as number : 60_000
    const retryIn = props.has('retry') ? this.value(props.get('retry')!) as Record<string, unknown> : {}
    if (typeof retryIn !== 'object' || retryIn === null) throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `retry of function ${name} must be an object literal`, at)
    const retry = {
      attempts: (retryIn.attempts as number | undefined) ?? 3,
      backoff: (retryIn.backoff as 'exponential' | 'fixed' | undefined) ?? 'exponential',
      initialDelayMs: (retryIn.initialDelayMs as number | undefined) ?? 200,
      maxDelayMs: (retryIn.maxDelayMs as number | undefined) ?? 30_000,
    }
    // What the SDK would refuse when the module loads, refused here with the place.
    const options = ManifestFunction.pick({ name: true, pool: true, timeoutMs: true, retry: true }).safeParse({ name, pool, timeoutMs, retry })
    if (!options.success || retry.attempts > 100 || retry.maxDelayMs < retry.initialDelayMs) {
      const why = options.success ? 'retry needs attempts from 1 to 100 and initialDelayMs <= maxDelayMs' : formatIssues(options.error.issues)
      throw new CodegenError('PRX_CODEGEN_INVALID', `function ${name} is not a valid definition: ${why}`, at)
    }
    const schema = (key: 'input' | 'output'): JsonSchema => {
      const node = props.get(key)
      if (!node) throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `function ${name} has no ${key} schema`, at)
      const value = this.value(node)
      if (!(value instanceof z.ZodType)) {
        throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `the ${key} of function ${name} is not a zod schema codegen can read: ${snippet(node)}`, this.whereAbsolute(node))
      }
      try {
        const { $schema: _, ...json } = z.toJSONSchema(value, { io: 'input', unrepresentable: 'throw' }) as JsonSchema
        return json
      } catch (error) {
        throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', `the ${key} schema of function ${name} has a type codegen cannot express as JSON Schema (${(error as Error).message}); use JSON types (string, number, boolean, null, arrays, objects, records, unions)`, this.whereAbsolute(node))
      }
    }
    return { name, pool, timeoutMs, retry, input: schema('input'), output: schema('output'), source: this.where(call), location: at }
  }

  readWorkflow(call: CallExpression): Located<StaticWorkflow> {
    const props = this.optionsOf(call, 'defineWorkflow')
    return { name: this.required(props, 'name', call, 'string') as string, source: this.where(call), location: this.whereAbsolute(call), rules: [] }
  }

  /** The property nodes of a definition's options object (a literal, or a const holding one). */
  optionsOf(call: CallExpression, what: string): Map<string, Expression> {
    let arg: Node | undefined = call.getArguments()[0]
    if (arg && Node.isIdentifier(arg)) arg = this.constInitializer(arg)
    while (arg && (Node.isAsExpression(arg) || Node.isSatisfiesExpression(arg) || Node.isParenthesizedExpression(arg))) arg = arg.getExpression()
    if (!arg || !Node.isObjectLiteralExpression(arg)) {
      throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `${what}(...) must be given an object literal (or a const holding one) so codegen can read it`, this.whereAbsolute(call))
    }
    const props = new Map<string, Expression>()
    for (const prop of arg.getProperties()) {
      if (Node.isPropertyAssignment(prop)) props.set(prop.getName().replace(/^['"]|['"]$/g, ''), prop.getInitializerOrThrow())
      else if (Node.isShorthandPropertyAssignment(prop)) props.set(prop.getName(), prop.getNameNode())
      else if (Node.isMethodDeclaration(prop)) continue
      else if (Node.isSpreadAssignment(prop)) {
        throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `${what}(...) options use a spread; write the properties out so codegen can read them`, this.whereAbsolute(prop))
      }
    }
    return props
  }

  required(props: Map<string, Expression>, key: string, call: Node, type: 'string' | 'number'): unknown {
    const node = props.get(key)
    if (!node) throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `the definition has no ${key}`, this.whereAbsolute(call))
    return this.literalOf(node, type)
  }

  literalOf(node: Node, type: 'string' | 'number'): unknown {
    const value = this.value(node)
    if (typeof value !== type) throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `expected a ${type} literal (or a const holding one), found ${snippet(node)}`, this.whereAbsolute(node))
    return value
  }

  /** The initializer of the const an identifier names (through imports and re-exports). */
  constInitializer(id: Node): Expression | undefined {
    const symbol = id.getSymbol()
    const target = symbol?.isAlias() ? symbol.getAliasedSymbol() ?? symbol : symbol
    const declaration = target?.getDeclarations()[0]
    if (declaration && Node.isVariableDeclaration(declaration)) {
      if (declaration.getVariableStatement()?.getDeclarationKind() !== VariableDeclarationKind.Const) {
        throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `${id.getText()} is declared with let or var; codegen reads only consts`, this.whereAbsolute(declaration))
      }
      return declaration.getInitializer()
    }
    return undefined
  }

  /** Evaluates a static expression: literals, consts, zod builders. */
  value(node: Node): unknown {
    const cached = this.#cache.get(node)
    if (cached !== undefined) return cached
    if (this.#evaluating.has(node)) throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', 'a schema refers to itself; recursive schemas cannot be generated', this.whereAbsolute(node))
    this.#evaluating.add(node)
    try {
      const value = this.#evaluate(node)
      this.#cache.set(node, value)
      return value
    } finally {
      this.#evaluating.delete(node)
    }
  }

  #evaluate(node: Node): unknown {
    const notStatic = (what: string): never => {
      throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `${what} cannot be read statically: ${snippet(node)}. Codegen reads zod builders with literal arguments, and consts holding them`, this.whereAbsolute(node))
    }
    if (Node.isStringLiteral(node) || Node.isNoSubstitutionTemplateLiteral(node)) return node.getLiteralValue()
    if (Node.isNumericLiteral(node)) return node.getLiteralValue()
    if (Node.isTrueLiteral(node)) return true
    if (Node.isFalseLiteral(node)) return false
    if (Node.isNullLiteral(node)) return null
    if (Node.isRegularExpressionLiteral(node)) {
      const regex = node.getLiteralValue()
      if (regex.flags) {
        throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', `the regex ${node.getText()} has flags (${regex.flags}), which JSON Schema patterns cannot carry; write the pattern without them (e.g. [Aa] for case)`, this.whereAbsolute(node))
      }
      return regex
    }
    if (Node.isParenthesizedExpression(node) || Node.isAsExpression(node) || Node.isSatisfiesExpression(node) || Node.isNonNullExpression(node) || Node.isTypeAssertion(node)) {
      return this.value(node.getExpression())
    }
    if (Node.isPrefixUnaryExpression(node)) {
      const operand = this.value(node.getOperand())
      if (typeof operand === 'number' && node.getOperatorToken() === SyntaxKind.MinusToken) return -operand
      if (typeof operand === 'number' && node.getOperatorToken() === SyntaxKind.PlusToken) return operand
      return notStatic('this expression')
    }
    if (Node.isArrayLiteralExpression(node)) {
      return node.getElements().map((e) => (Node.isSpreadElement(e) ? notStatic('a spread') : this.value(e)))
    }
    if (Node.isObjectLiteralExpression(node)) {
      // No prototype: a "__proto__" key is a plain key, nothing is inherited.
      const out = Object.create(null) as Record<string, unknown>
      for (const prop of node.getProperties()) {
        if (Node.isPropertyAssignment(prop)) {
          const nameNode = prop.getNameNode()
          const key = Node.isComputedPropertyName(nameNode) ? this.value(nameNode.getExpression()) : nameNode.getText().replace(/^['"]|['"]$/g, '')
          if (typeof key !== 'string' && typeof key !== 'number') notStatic('a computed key that is not a string or number')
          out[String(key)] = this.value(prop.getInitializerOrThrow())
        } else if (Node.isShorthandPropertyAssignment(prop)) out[prop.getName()] = this.value(prop.getNameNode())
        else if (Node.isSpreadAssignment(prop)) {
          const spread = this.value(prop.getExpression())
          if (typeof spread !== 'object' || spread === null || spread instanceof z.ZodType) notStatic('this spread')
          Object.assign(out, spread)
        } else notStatic('a method or accessor')
      }
      return out
    }
    if (Node.isIdentifier(node)) {
      if (node.getText() === 'undefined') return undefined
      const zod = this.#zodImport(node)
      if (zod !== null) return zod
      const init = this.constInitializer(node)
      if (init) return this.value(init)
      return notStatic(`${node.getText()}, which is not a const with an initializer,`)
    }
    if (Node.isPropertyAccessExpression(node)) {
      const target = this.value(node.getExpression())
      const name = node.getName()
      if (target === ZOD_NAMESPACE) return this.#zodMember(node, name, ZOD_BUILDERS, z as unknown as Record<string, unknown>)
      if (target === ISO_NAMESPACE) return this.#zodMember(node, name, ISO_BUILDERS, z.iso as unknown as Record<string, unknown>)
      if (target instanceof z.ZodType) {
        if (SCHEMA_PROPERTIES.has(name)) return (target as unknown as Record<string, unknown>)[name]
        if (SCHEMA_METHODS.has(name)) return new SchemaMethod(name, target)
        return this.#inexpressible(node, name)
      }
      if (typeof target === 'object' && target !== null && !Array.isArray(target) && Object.hasOwn(target, name)) return (target as Record<string, unknown>)[name]
      return notStatic(`the property ${name}`)
    }
    if (Node.isElementAccessExpression(node)) {
      const target = this.value(node.getExpression())
      const key = this.value(node.getArgumentExpressionOrThrow())
      const plain = typeof target === 'object' && target !== null && !(target instanceof z.ZodType) && !(target instanceof SchemaMethod)
      if (plain && (typeof key === 'string' || typeof key === 'number') && Object.hasOwn(target, key)) return (target as Record<string, unknown>)[key]
      return notStatic('this element access')
    }
    if (Node.isCallExpression(node)) {
      let callee: unknown
      try {
        callee = this.value(node.getExpression())
      } catch (error) {
        // A call of something that is not zod (a helper function): point at the call.
        if (error instanceof CodegenError && error.code === 'PRX_CODEGEN_NOT_STATIC') return notStatic('this call (only zod builders are read)')
        throw error
      }
      const args = node.getArguments().map((a) => this.value(a))
      try {
        if (typeof callee === 'function' && BUILDERS.has(callee)) return (callee as (...a: unknown[]) => unknown)(...args)
        if (callee instanceof SchemaMethod) return callee.call(args)
      } catch (error) {
        throw new CodegenError('PRX_CODEGEN_NOT_STATIC', `zod rejected ${snippet(node)}: ${(error as Error).message}`, this.whereAbsolute(node))
      }
      return notStatic('this call (only zod builders are read)')
    }
    return notStatic('this expression')
  }

  #zodMember(node: Node, name: string, allowed: Set<string>, namespace: Record<string, unknown>): unknown {
    if (name === 'iso' && allowed === ZOD_BUILDERS) return ISO_NAMESPACE
    if (allowed.has(name) && typeof namespace[name] === 'function') {
      const builder = (namespace[name] as (...a: unknown[]) => unknown).bind(namespace)
      BUILDERS.add(builder)
      return builder
    }
    return this.#inexpressible(node, name)
  }

  #inexpressible(node: Node, name: string): never {
    if (INEXPRESSIBLE.has(name)) {
      throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', `.${name}(...) is code or a type with no JSON Schema form, so a generated stub cannot carry it; validate it inside the handler instead (schemas that cross services must be data)`, this.whereAbsolute(node))
    }
    throw new CodegenError('PRX_CODEGEN_UNSUPPORTED_SCHEMA', `codegen does not read zod's .${name}; use the builders listed in docs/codegen.md`, this.whereAbsolute(node))
  }

  /** The zod namespace (or one of its builders) when `id` is imported from zod; null otherwise. */
  #zodImport(id: Node): unknown {
    const declaration = id.getSymbol()?.getDeclarations()[0]
    if (!declaration) return null
    const importDecl = declaration.getFirstAncestorByKind(SyntaxKind.ImportDeclaration)
    if (!importDecl || !/^zod(\/v4)?$/.test(importDecl.getModuleSpecifierValue())) return null
    if (Node.isNamespaceImport(declaration)) return ZOD_NAMESPACE
    if (Node.isImportSpecifier(declaration)) {
      const imported = declaration.getName()
      if (imported === 'z') return ZOD_NAMESPACE
      return this.#zodMember(id, imported, ZOD_BUILDERS, z as unknown as Record<string, unknown>)
    }
    return ZOD_NAMESPACE
  }
}

function snippet(node: Node): string {
  const text = node.getText().replace(/\s+/g, ' ')
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

