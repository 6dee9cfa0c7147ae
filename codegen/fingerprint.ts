/**
 * Rule fingerprints from the source (scheme `s1`). A fingerprint hashes what defines a rule's
 * behaviour: its name, its priority, its match (the condition data its bundle describes) and a
 * digest of its code, which covers
 *
 * - the sections it was given (`action`, `reaction`, `error`), and
 * - transitively, every module-local helper they reference: functions, consts, classes and enums
 *   declared in the service's own files (closures of the `rules` callback included).
 *
 * Code is hashed as a token stream of its syntax tree, so comments, whitespace, line breaks, quote
 * style, semicolons, trailing commas, redundant parentheses and TypeScript types do not count, and
 * neither does the bundler (which never sees it). References out of the service's own files
 * count by identity, not text: a generated stub as its service and export (`@fn:billing.charge`,
 * however it is imported or aliased), another module as its specifier and export
 * (`@ext:zod#z`), another workflow of the service as its name. Editing a helper changes exactly
 * the rules whose sections reach it.
 *
 * Not covered: values a section closes over that come from a function's parameters (a rule
 * factory's arguments) count by the parameter's name only; code outside the service folder counts
 * by its import, not its text. Changing how code is normalised is a new scheme (`s2:`), never an
 * edit of this one: stored fingerprints must stay comparable.
 */
import { createHash } from 'node:crypto'
import { realpathSync } from 'node:fs'
import path from 'node:path'
import { ts } from 'ts-morph'
import { FINGERPRINT_SCHEME } from '../sdk/manifest.js'

/** A rule as codegen found it in the source: one `rule(name)…action(…)` chain. */
export interface StaticRule {
  /** null when the name is not a string literal or a const holding one (a rule factory's parameter). */
  name: string | null
  /** Hash of the normalised code of the rule's sections and the helpers they reach. */
  digest: string
  hasReaction: boolean
  hasError: boolean
  /** `file:line` of the chain, from the current folder. */
  location: string
  /**
   * The chain's syntax: `rule(name)` and the functions given to `match`, `action`, `reaction` and
   * `error` (a reference to a function of the service's own files is followed to it). For the
   * fact-path check (fact-paths.ts); not part of the fingerprint.
   */
  nodes: { root: ts.Node; match: ts.Node | null; action: ts.Node | null; reaction: ts.Node | null; error: ts.Node | null }
}

/** The fingerprint of a rule: its name, priority and match (as its bundle describes them) and the digest of its code. */
export function ruleFingerprint(rule: { name: string; priority: number; condition: unknown }, digest: string): string {
  const hash = sha256(JSON.stringify([FINGERPRINT_SCHEME, rule.name, rule.priority, canonical(rule.condition), digest]))
  return `${FINGERPRINT_SCHEME}:${hash.slice(0, 32)}`
}

interface Chain {
  root: ts.CallExpression
  match: ts.Node | null
  sections: { action: ts.Node | null; reaction: ts.Node | null; error: ts.Node | null }
}

interface Tokens { tokens: string[]; deps: ts.Node[] }

const K = ts.SyntaxKind
/** Modifiers with no runtime meaning: exporting or typing a helper does not change what it does. */
const TYPE_MODIFIERS = new Set<ts.SyntaxKind>([K.ExportKeyword, K.DefaultKeyword, K.DeclareKeyword, K.PublicKeyword, K.PrivateKeyword, K.ProtectedKeyword, K.ReadonlyKeyword, K.AbstractKeyword, K.OverrideKeyword])

/**
 * Computes the rules of a service's workflows, with their digests, from its source. One instance
 * per read of the service (it caches each helper's tokens).
 */
export class SourceDigests {
  readonly #checker: ts.TypeChecker
  readonly #dirs: string[]
  readonly #service: string
  readonly #definitions: ReadonlyMap<ts.Node, string>
  readonly #declarations = new Map<ts.Node, Tokens>()

  /**
   * `definitions`: the `defineWorkflow` / `defineFunction` calls of the service, each with its
   * identity (`wf:service.name`): a reference to one counts as that identity, not its text.
   */
  constructor(options: { checker: ts.TypeChecker; dir: string; service: string; definitions: ReadonlyMap<ts.Node, string> }) {
    this.#checker = options.checker
    const dir = path.resolve(options.dir)
    let real = dir
    try {
      real = realpathSync(dir)
    } catch {
      // a folder that is not there has no files to compare with anyway
    }
    this.#dirs = [...new Set([dir, real])]
    this.#service = options.service
    this.#definitions = options.definitions
  }

  /** Every rule chain reachable from a `defineWorkflow(...)` call (its options and the helpers they reference). */
  rulesOf(call: ts.CallExpression): StaticRule[] {
    const rules: StaticRule[] = []
    const chains = new Set<ts.Node>()
    const scanned = new Set<ts.Node>()
    const queue: { node: ts.Node; root: ts.Node }[] = call.arguments.map((node) => ({ node, root: call }))
    while (queue.length > 0) {
      const { node: start, root } = queue.pop()!
      const visit = (node: ts.Node): void => {
        if (ts.isCallExpression(node) && methodName(node) === 'action' && !chains.has(node)) {
          chains.add(node)
          const chain = chainOf(node)
          if (chain) rules.push(this.#rule(chain))
        }
        if (ts.isIdentifier(node) && !isNamePosition(node)) {
          const { dep } = this.#reference(node, root)
          if (dep && !scanned.has(dep)) {
            scanned.add(dep)
            queue.push({ node: dep, root: dep })
          }
        }
        ts.forEachChild(node, visit)
      }
      visit(start)
    }
    return rules
  }

  #rule(chain: Chain): StaticRule {
    const nameNode = chain.root.arguments[0]
    return {
      name: nameNode ? this.#staticString(nameNode, 0) : null,
      digest: this.#digest(chain.sections),
      hasReaction: chain.sections.reaction !== null,
      hasError: chain.sections.error !== null,
      location: where(chain.root),
      nodes: {
        root: chain.root,
        match: this.#functionOf(chain.match),
        action: this.#functionOf(chain.sections.action),
        reaction: this.#functionOf(chain.sections.reaction),
        error: this.#functionOf(chain.sections.error),
      },
    }
  }

  /** The function a section or match is given as: inline, or a const / function declaration it names. */
  #functionOf(node: ts.Node | null): ts.Node | null {
    if (!node) return null
    let current = unwrap(node)
    for (let hops = 0; ts.isIdentifier(current) && hops < 20; hops++) {
      let symbol = this.#checker.getSymbolAtLocation(current)
      if (symbol && symbol.flags & ts.SymbolFlags.Alias) symbol = this.#checker.getAliasedSymbol(symbol)
      const declaration = symbol?.valueDeclaration
      if (!declaration || !this.#own(declaration.getSourceFile().fileName)) break
      if (ts.isFunctionDeclaration(declaration)) return declaration
      if (!ts.isVariableDeclaration(declaration) || !declaration.initializer) break
      current = unwrap(declaration.initializer)
    }
    return current
  }

  #digest(sections: Chain['sections']): string {
    const pending: ts.Node[] = []
    const code = (node: ts.Node | null): string[] | null => {
      if (!node) return null
      const { tokens, deps } = this.#tokens(node)
      pending.push(...deps)
      return tokens
    }
    const streams = { action: code(sections.action), reaction: code(sections.reaction), error: code(sections.error) }
    const helpers = new Map<ts.Node, string>()
    while (pending.length > 0) {
      const declaration = pending.pop()!
      if (helpers.has(declaration)) continue
      const { tokens, deps } = this.#declaration(declaration)
      helpers.set(declaration, JSON.stringify(tokens))
      pending.push(...deps)
    }
    // Helpers by content, not by file or position: moving one changes nothing.
    return sha256(JSON.stringify({ ...streams, helpers: [...new Set(helpers.values())].sort() }))
  }

  /** A helper's tokens (cached: several rules may reach it). */
  #declaration(declaration: ts.Node): Tokens {
    let cached = this.#declarations.get(declaration)
    if (!cached) {
      cached = this.#tokens(declaration)
      if (ts.isVariableDeclaration(declaration)) {
        const flags = declaration.parent.flags
        cached.tokens.unshift(flags & ts.NodeFlags.Const ? 'const' : flags & ts.NodeFlags.Let ? 'let' : 'var')
      }
      this.#declarations.set(declaration, cached)
    }
    return cached
  }

  /**
   * The normalised token stream of `root`: its tree, each node's tokens in brackets (so grouping
   * is explicit and parentheses can go), without comments, types or optional punctuation.
   */
  #tokens(root: ts.Node): Tokens {
    const source = root.getSourceFile()
    const tokens: string[] = []
    const deps: ts.Node[] = []
    const reference = (id: ts.Identifier, symbol?: ts.Symbol): string => {
      const found = this.#reference(id, root, symbol)
      if (found.dep) deps.push(found.dep)
      return found.token
    }
    const walk = (node: ts.Node): void => {
      if (skipped(node)) return
      const inner = unwrap(node)
      if (inner !== node) return walk(inner)
      if (ts.isIdentifier(node)) {
        tokens.push(isNamePosition(node) && !isNamespaceMember(node, this.#checker) ? node.text : reference(node))
        return
      }
      if (node.kind <= K.LastToken) {
        const token = tokenText(node, source)
        if (token !== null) tokens.push(token)
        return
      }
      if (ts.isShorthandPropertyAssignment(node)) {
        // `{ helper }` reads as `{ helper: helper }`: the key is data, the value a reference.
        const value = this.#checker.getShorthandAssignmentValueSymbol(node)
        tokens.push('(', node.name.text, ':', value ? reference(node.name, value) : node.name.text, ')')
        return
      }
      const start = tokens.length
      tokens.push('(')
      const children = [...node.getChildren(source)]
      const skip = skippedChildren(node, children)
      children.forEach((child, i) => {
        if (!skip.has(i)) walk(child)
      })
      if (tokens.length === start + 1) tokens.pop()
      else tokens.push(')')
    }
    walk(root)
    return { tokens, deps }
  }

  /**
   * What a reference contributes: a stub's or another module's identity, or its own spelling;
   * and, for a helper of the service's own files declared outside `root`, that declaration.
   */
  #reference(id: ts.Identifier, root: ts.Node, given?: ts.Symbol): { token: string; dep?: ts.Node } {
    const found = given ?? this.#checker.getSymbolAtLocation(id)
    if (!found) return { token: id.text }
    let symbol: ts.Symbol = found
    for (let hops = 0; symbol.flags & ts.SymbolFlags.Alias; hops++) {
      const declaration = symbol.declarations?.[0]
      const from = declaration ? importOf(declaration) : null
      if (from) {
        const target = this.#module(from.specifier, from.file)
        if (target) return { token: `@${target}${target.startsWith('fn:') || target.startsWith('wf:') ? '.' : '#'}${from.name}` }
      }
      const next: ts.Symbol | undefined = hops < 100 ? this.#checker.getImmediateAliasedSymbol(symbol) : undefined
      // An import of the service's own that does not resolve (a file not written yet): its place.
      if (!next) return { token: from ? `@import:${this.#relative(path.resolve(path.dirname(from.file), from.specifier))}#${from.name}` : id.text }
      symbol = next
    }
    const declaration = symbol.valueDeclaration ?? symbol.declarations?.[0]
    if (!declaration) return { token: id.text }
    if (ts.isSourceFile(declaration)) return { token: `@module:${this.#relative(declaration.fileName)}` }
    if (!this.#own(declaration.getSourceFile().fileName) || within(declaration, root)) return { token: id.text }
    const helper = helperOf(declaration)
    if (!helper || within(root, helper)) return { token: id.text }
    const initializer = ts.isVariableDeclaration(helper) && helper.initializer ? unwrap(helper.initializer) : null
    const definition = initializer ? this.#definitions.get(initializer) : undefined
    if (definition) return { token: `@${definition}` }
    // A helper imported under another name counts by its own.
    const name = ts.isVariableDeclaration(helper) ? (helper === declaration && ts.isIdentifier(helper.name) ? helper.name.text : symbol.name) : helper.name?.text ?? symbol.name
    return { token: name, dep: helper }
  }

  /**
   * Where an import leads: the identity prefix of a generated module or of code outside the
   * service (`fn:billing`, `ext:zod`), or null for a module of the service's own (followed).
   */
  #module(specifier: string, fromFile: string): string | null {
    if (!specifier.startsWith('.') && !path.isAbsolute(specifier)) return `ext:${specifier}`
    const absolute = path.resolve(path.dirname(fromFile), specifier)
    const relative = this.#relative(absolute)
    if (relative.startsWith('../') || path.isAbsolute(relative)) return `ext:${relative}`
    const parts = relative.replace(/\.([cm]?[jt]s|d\.[cm]?ts)$/, '').split('/')
    if (parts[0] !== 'generated') return null
    if (parts.length === 2 && (parts[1] === 'functions' || parts[1] === 'workflows')) return `${parts[1] === 'functions' ? 'fn' : 'wf'}:${this.#service}`
    if (parts.length === 4 && parts[1] === 'services' && (parts[3] === 'functions' || parts[3] === 'workflows')) return `${parts[3] === 'functions' ? 'fn' : 'wf'}:${parts[2]}`
    return `gen:${parts.join('/')}`
  }

  /** A path relative to the service folder, with `/`. */
  #relative(file: string): string {
    for (const dir of this.#dirs) {
      const relative = path.relative(dir, file)
      if (!relative.startsWith('..') && !path.isAbsolute(relative)) return relative.split(path.sep).join('/')
    }
    return path.relative(this.#dirs[0]!, file).split(path.sep).join('/')
  }

  /** A file of the service's own (not generated/, not node_modules). */
  #own(file: string): boolean {
    const relative = this.#relative(file)
    return !relative.startsWith('../') && !path.isAbsolute(relative) && !relative.startsWith('generated/') && !relative.split('/').includes('node_modules')
  }

  /** A string literal, or a const holding one (a rule's name). */
  #staticString(node: ts.Node, depth: number): string | null {
    const value = unwrap(node)
    if (ts.isStringLiteral(value) || ts.isNoSubstitutionTemplateLiteral(value)) return value.text
    if (!ts.isIdentifier(value) || depth > 20) return null
    let symbol = this.#checker.getSymbolAtLocation(value)
    if (symbol && symbol.flags & ts.SymbolFlags.Alias) symbol = this.#checker.getAliasedSymbol(symbol)
    const declaration = symbol?.valueDeclaration
    if (!declaration || !ts.isVariableDeclaration(declaration) || !declaration.initializer || !(declaration.parent.flags & ts.NodeFlags.Const)) return null
    return this.#staticString(declaration.initializer, depth + 1)
  }
}

/** `x.name(...)`: the method's name, or null. */
function methodName(call: ts.CallExpression): string | null {
  const callee = unwrap(call.expression)
  return ts.isPropertyAccessExpression(callee) ? callee.name.text : null
}

/** The rule chain whose `.action(...)` call this is: down through `.match`/`.priority` to `rule(name)`, up through `.reaction`/`.error`. */
function chainOf(action: ts.CallExpression): Chain | null {
  let receiver = unwrap((unwrap(action.expression) as ts.PropertyAccessExpression).expression)
  let matched = false
  let match: ts.Node | null = null
  while (ts.isCallExpression(receiver) && (methodName(receiver) === 'match' || methodName(receiver) === 'priority')) {
    if (methodName(receiver) === 'match') {
      matched = true
      match = receiver.arguments[0] ?? null
    }
    receiver = unwrap((unwrap(receiver.expression) as ts.PropertyAccessExpression).expression)
  }
  if (!matched || !ts.isCallExpression(receiver) || receiver.arguments.length === 0) return null
  const sections: Chain['sections'] = { action: action.arguments[0] ?? null, reaction: null, error: null }
  let current: ts.Node = action
  for (;;) {
    while (current.parent && ts.isParenthesizedExpression(current.parent)) current = current.parent
    const access = current.parent
    if (!access || !ts.isPropertyAccessExpression(access) || access.expression !== current) break
    const name = access.name.text
    const next = access.parent
    if ((name !== 'reaction' && name !== 'error') || !next || !ts.isCallExpression(next) || next.expression !== access) break
    sections[name] = next.arguments[0] ?? null
    current = next
  }
  return { root: receiver, match, sections }
}

/** Wrappers with no runtime meaning of their own: parentheses (the token stream brackets every node), type assertions, `!`. */
function unwrap(node: ts.Node): ts.Node {
  let current = node
  while (ts.isParenthesizedExpression(current) || ts.isAsExpression(current) || ts.isSatisfiesExpression(current) || ts.isNonNullExpression(current)
    || ts.isTypeAssertionExpression(current) || ts.isExpressionWithTypeArguments(current)) current = current.expression
  return current
}

/** Nodes with no runtime meaning: comments (JSDoc), types, declarations of types, `declare`, overload signatures. */
function skipped(node: ts.Node): boolean {
  if (node.kind >= K.FirstJSDocNode && node.kind <= K.LastJSDocNode) return true
  if (ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) || ts.isIndexSignatureDeclaration(node)) return true
  if (ts.isHeritageClause(node) && node.token === K.ImplementsKeyword) return true
  if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isConstructorDeclaration(node)) && !node.body) return true
  if ((ts.isImportDeclaration(node) && node.importClause?.isTypeOnly) || (ts.isExportDeclaration(node) && node.isTypeOnly)) return true
  if (ts.isParameter(node) && ts.isIdentifier(node.name) && node.name.text === 'this') return true
  return ts.canHaveModifiers(node) && (ts.getModifiers(node)?.some((m) => m.kind === K.DeclareKeyword) ?? false)
}

/** Children that are punctuation or types: `: Type`, `<T>`, `?` and `!` markers, statement-ending `;`, a trailing `,`, an arrow's parameter parentheses. */
function skippedChildren(node: ts.Node, children: ts.Node[]): Set<number> {
  const skip = new Set<number>()
  const n = node as unknown as { type?: ts.Node; typeParameters?: ts.NodeArray<ts.Node>; typeArguments?: ts.NodeArray<ts.Node>; questionToken?: ts.Node; exclamationToken?: ts.Node; modifiers?: ts.NodeArray<ts.Node> }
  const sameRange = (child: ts.Node, list: ts.NodeArray<ts.Node> | undefined) => list !== undefined && child.pos === list.pos && child.end === list.end
  children.forEach((child, i) => {
    const kind = child.kind
    if (kind === K.SemicolonToken && !ts.isForStatement(node)) skip.add(i)
    else if (kind === K.CommaToken && node.kind === K.SyntaxList && i === children.length - 1) skip.add(i)
    else if ((kind === K.OpenParenToken || kind === K.CloseParenToken) && ts.isArrowFunction(node)) skip.add(i)
    else if (n.type !== undefined && child === n.type) {
      skip.add(i)
      if (children[i - 1]?.kind === K.ColonToken) skip.add(i - 1)
    } else if (kind === K.SyntaxList && (sameRange(child, n.typeParameters) || sameRange(child, n.typeArguments))) {
      skip.add(i)
      if (children[i - 1]?.kind === K.LessThanToken) skip.add(i - 1)
      if (children[i + 1]?.kind === K.GreaterThanToken) skip.add(i + 1)
    } else if ((child === n.questionToken && !ts.isConditionalExpression(node)) || child === n.exclamationToken) skip.add(i)
    else if (kind === K.SyntaxList && sameRange(child, n.modifiers)) {
      if (child.getChildren().every((m) => TYPE_MODIFIERS.has(m.kind))) skip.add(i)
    } else if (TYPE_MODIFIERS.has(kind) && node.kind === K.SyntaxList && node.parent && sameRange(node, (node.parent as { modifiers?: ts.NodeArray<ts.Node> }).modifiers)) skip.add(i)
  })
  return skip
}

/** A token as it enters the hash: literals by value (quote style and numeric spelling aside), the rest as written. */
function tokenText(node: ts.Node, source: ts.SourceFile): string | null {
  switch (node.kind) {
    case K.StringLiteral:
      return JSON.stringify((node as ts.StringLiteral).text)
    case K.NumericLiteral: {
      const text = (node as ts.NumericLiteral).text
      const value = Number(text)
      return Number.isFinite(value) ? String(value) : text
    }
    case K.NoSubstitutionTemplateLiteral:
    case K.TemplateHead:
    case K.TemplateMiddle:
    case K.TemplateTail:
    case K.RegularExpressionLiteral:
    case K.BigIntLiteral:
      return node.getText(source)
    case K.PrivateIdentifier:
      return (node as ts.PrivateIdentifier).text
    case K.EndOfFileToken:
      return null
    default:
      return ts.tokenToString(node.kind) ?? node.getText(source)
  }
}

/** An identifier that names a property, a member or a label, not a binding in scope. */
function isNamePosition(id: ts.Identifier): boolean {
  const parent = id.parent
  if (!parent) return false
  if ((ts.isPropertyAccessExpression(parent) || ts.isPropertyAssignment(parent) || ts.isMethodDeclaration(parent) || ts.isPropertyDeclaration(parent)
    || ts.isGetAccessorDeclaration(parent) || ts.isSetAccessorDeclaration(parent) || ts.isEnumMember(parent) || ts.isPropertySignature(parent)) && parent.name === id) return true
  if (ts.isBindingElement(parent) && parent.propertyName === id) return true
  if ((ts.isLabeledStatement(parent) || ts.isBreakStatement(parent) || ts.isContinueStatement(parent)) && parent.label === id) return true
  return false
}

/** `helpers.label` where `helpers` is a namespace import: the member is a reference to resolve. */
function isNamespaceMember(id: ts.Identifier, checker: ts.TypeChecker): boolean {
  const parent = id.parent
  if (!ts.isPropertyAccessExpression(parent) || parent.name !== id) return false
  const object = unwrap(parent.expression)
  if (!ts.isIdentifier(object)) return false
  const declaration = checker.getSymbolAtLocation(object)?.declarations?.[0]
  return declaration !== undefined && ts.isNamespaceImport(declaration)
}

/** Where an import or re-export declaration takes its binding from. */
function importOf(declaration: ts.Declaration): { specifier: string; name: string; file: string } | null {
  const file = declaration.getSourceFile().fileName
  const text = (node: ts.Expression | undefined) => (node && ts.isStringLiteral(node) ? node.text : null)
  let specifier: string | null = null
  let name = ''
  if (ts.isImportSpecifier(declaration)) {
    specifier = text(declaration.parent.parent.parent.moduleSpecifier)
    name = (declaration.propertyName ?? declaration.name).text
  } else if (ts.isImportClause(declaration)) {
    specifier = text(declaration.parent.moduleSpecifier)
    name = 'default'
  } else if (ts.isNamespaceImport(declaration)) {
    specifier = text(declaration.parent.parent.moduleSpecifier)
    name = '*'
  } else if (ts.isExportSpecifier(declaration)) {
    specifier = text(declaration.parent.parent.moduleSpecifier)
    name = (declaration.propertyName ?? declaration.name).text
  } else if (ts.isNamespaceExport(declaration)) {
    specifier = text(declaration.parent.moduleSpecifier)
    name = '*'
  } else if (ts.isImportEqualsDeclaration(declaration) && ts.isExternalModuleReference(declaration.moduleReference)) {
    specifier = text(declaration.moduleReference.expression)
    name = '='
  }
  return specifier === null ? null : { specifier, name, file }
}

/** The declaration a reference's text comes from, or null when it is a parameter (a value known only at a call). */
function helperOf(declaration: ts.Node): ts.VariableDeclaration | ts.FunctionDeclaration | ts.ClassDeclaration | ts.EnumDeclaration | ts.ModuleDeclaration | null {
  let node: ts.Node | undefined = declaration
  while (node && (ts.isBindingElement(node) || ts.isObjectBindingPattern(node) || ts.isArrayBindingPattern(node))) node = node.parent
  if (!node) return null
  if (ts.isVariableDeclaration(node)) return node
  if (ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node) || ts.isEnumDeclaration(node) || ts.isModuleDeclaration(node)) return node
  return null
}

function within(node: ts.Node, ancestor: ts.Node): boolean {
  return node.getSourceFile() === ancestor.getSourceFile() && node.pos >= ancestor.pos && node.end <= ancestor.end
}

function where(node: ts.Node): string {
  const source = node.getSourceFile()
  return `${path.relative(process.cwd(), source.fileName)}:${source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1}`
}

/** JSON with object keys sorted, so the hash does not depend on the order a condition was built in. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]))
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
