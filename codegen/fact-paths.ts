/**
 * The fact-path check: every path a rule's match reads (as its bundle describes it, so paths built
 * by helpers or loops count too) and every path its sections set where the source says so
 * statically (`ctx.set({ 'a.b': … })`, `ctx.setPath('a.b', …)`, the literal head of a template
 * `ctx.setPath(`chunks.${n}`, …)`) must be in the workflow's facts schema (the manifest's JSON
 * Schema). A match on a path the facts can never hold never fires, and the instance waits for
 * ever; a set of one fails the evaluation. Each problem is reported at its file, line and column.
 */
import path from 'node:path'
import { ts } from 'ts-morph'
import type { ServiceManifest } from '../sdk/manifest.js'
import { factPathProblem, type FactPathProblem } from '../sdk/paths.js'
import type { FactPathIssue } from './errors.js'
import type { Located, StaticWorkflow } from './static.js'

/** The fact-path problems of a service's rules; empty when every path is in its workflow's facts schema. */
export function checkFactPaths(manifest: ServiceManifest, workflows: readonly Located<StaticWorkflow>[]): FactPathIssue[] {
  const issues: FactPathIssue[] = []
  const seen = new Set<string>()
  const add = (issue: FactPathIssue): void => {
    const key = `${issue.file}:${issue.line}:${issue.column}:${issue.path}`
    if (seen.has(key)) return
    seen.add(key)
    issues.push(issue)
  }
  for (const workflow of manifest.workflows) {
    const found = workflows.find((w) => w.name === workflow.name)
    for (const rule of workflow.rules) {
      const chains = found?.rules.filter((r) => r.name === rule.name) ?? []
      const chain = chains.length === 1 ? chains[0]! : null
      const what = `rule "${rule.name}" of workflow ${workflow.name}`
      for (const factPath of rule.paths) {
        const problem = factPathProblem(workflow.facts, factPath)
        if (!problem) continue
        const node = chain ? locateMatchPath(chain.nodes.match, factPath.split('.'), problem.valid) ?? chain.nodes.root : null
        add(issue(node, found?.location ?? `generated/manifest.json`, workflow.name, rule.name, factPath,
          `${what} matches on fact path "${factPath}", which is not in the facts schema${explain(problem, factPath, workflow.name)}`))
      }
      if (!chain) continue
      for (const section of ['action', 'reaction', 'error'] as const) {
        for (const set of setPaths(chain.nodes[section], section === 'action' ? 1 : 2)) {
          const problem = factPathProblem(workflow.facts, set.path, { children: set.open })
          if (!problem) continue
          const shown = set.open ? `"${set.path}.…"` : `"${set.path}"`
          add(issue(set.node, chain.location, workflow.name, rule.name, set.path,
            `${what} sets fact path ${shown} in its ${section} (ctx.${set.via}), which is not in the facts schema${explain(problem, set.path, workflow.name)}`))
        }
      }
    }
  }
  return issues.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.column - b.column))
}

/** What follows "which is not in the facts schema": the reason below the top level, and the closest path. */
function explain(problem: FactPathProblem, factPath: string, workflow: string): string {
  const segments = factPath.split('.')
  const reason = problem.valid === 0 && problem.reason.startsWith('the facts schema has no field') ? '' : `: ${problem.reason}`
  if (problem.suggestion !== undefined) {
    const corrected = [...segments.slice(0, problem.valid), problem.suggestion, ...segments.slice(problem.valid + 1)].join('.')
    return `${reason} (did you mean "${corrected}"?)`
  }
  const known = problem.known.length > 0 && problem.known.length <= 12 ? ` (it has ${problem.known.map((k) => `"${k}"`).join(', ')})` : ''
  return `${reason}${known}; fix the path, or add it to the facts schema of ${workflow}`
}

function issue(node: ts.Node | null, fallback: string, workflow: string, rule: string, factPath: string, message: string): FactPathIssue {
  if (!node) {
    const [file = fallback, line = '1'] = fallback.split(/:(?=\d+$)/)
    return { file, line: Number(line), column: 1, workflow, rule, path: factPath, message }
  }
  const source = node.getSourceFile()
  const { line, character } = source.getLineAndCharacterOfPosition(node.getStart(source))
  return { file: path.relative(process.cwd(), source.fileName), line: line + 1, column: character + 1, workflow, rule, path: factPath, message }
}

type FunctionLike = ts.ArrowFunction | ts.FunctionExpression | ts.FunctionDeclaration | ts.MethodDeclaration

function isFunctionLike(node: ts.Node | null): node is FunctionLike {
  return node !== null && (ts.isArrowFunction(node) || ts.isFunctionExpression(node) || ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node))
}

/**
 * The node in a match callback that reads `segments[0..failing]`: the access of the failing
 * segment (`f.video.urii` → `urii`), through the builder's parameter or names destructured from
 * it; else the first identifier or string spelling that segment; else null.
 */
function locateMatchPath(fn: ts.Node | null, segments: string[], failing: number): ts.Node | null {
  if (!fn) return null
  const wanted = segments.slice(0, failing + 1)
  const roots = new Map<string, string[]>()
  const param = isFunctionLike(fn) ? fn.parameters[0] : undefined
  const result: { node: ts.Node | null } = { node: null }
  if (param && ts.isIdentifier(param.name)) roots.set(param.name.text, [])
  else if (param && ts.isObjectBindingPattern(param.name)) {
    for (const element of param.name.elements) {
      const key = element.propertyName ?? element.name
      const keyText = ts.isIdentifier(key) || ts.isStringLiteral(key) ? key.text : null
      if (keyText === null || !ts.isIdentifier(element.name)) continue
      if (failing === 0 && keyText === wanted[0]) result.node ??= key
      roots.set(element.name.text, [keyText])
    }
  }
  const visit = (node: ts.Node): void => {
    if (result.node) return
    if (ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node)) {
      const chain = accessChain(node, roots)
      if (chain && chain.length === wanted.length && chain.every((s, i) => s === null || s === wanted[i])) {
        result.node = ts.isPropertyAccessExpression(node) ? node.name : node.argumentExpression
        return
      }
    }
    ts.forEachChild(node, visit)
  }
  visit(fn)
  if (result.node) return result.node
  const segment = segments[failing]
  const spelled = (node: ts.Node): ts.Node | undefined => {
    if ((ts.isIdentifier(node) || ts.isStringLiteralLike(node)) && node.text === segment) return node
    return ts.forEachChild(node, spelled)
  }
  return spelled(fn) ?? null
}

/** The path segments of `f.a.b` / `f['a'][0]` from a root in `roots`; a computed segment is null. */
function accessChain(node: ts.Expression, roots: ReadonlyMap<string, string[]>): (string | null)[] | null {
  const segments: (string | null)[] = []
  let current: ts.Expression = node
  for (;;) {
    if (ts.isParenthesizedExpression(current) || ts.isNonNullExpression(current) || ts.isAsExpression(current)) current = current.expression
    else if (ts.isPropertyAccessExpression(current)) {
      segments.unshift(current.name.text)
      current = current.expression
    } else if (ts.isElementAccessExpression(current)) {
      const argument = current.argumentExpression
      segments.unshift(ts.isStringLiteralLike(argument) || ts.isNumericLiteral(argument) ? argument.text : null)
      current = current.expression
    } else break
  }
  if (!ts.isIdentifier(current)) return null
  const root = roots.get(current.text)
  return root ? [...root, ...segments] : null
}

/** A path a section sets, as the source spells it: `open` when only its head is known (a template). */
interface SetPath { node: ts.Node; path: string; open: boolean; via: 'set' | 'setPath' }

/** The statically known paths a section sets on its `ctx` (parameter `ctxIndex`). */
function setPaths(fn: ts.Node | null, ctxIndex: number): SetPath[] {
  if (!isFunctionLike(fn)) return []
  const param = fn.parameters[ctxIndex]
  if (!param || !ts.isIdentifier(param.name)) return []
  const ctx = param.name.text
  const out: SetPath[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const callee = unwrap(node.expression)
      if (ts.isPropertyAccessExpression(callee) && ts.isIdentifier(unwrap(callee.expression)) && (unwrap(callee.expression) as ts.Identifier).text === ctx) {
        const arg = node.arguments[0] ? unwrap(node.arguments[0]) : undefined
        if (callee.name.text === 'setPath' && arg) {
          const spelled = spelledPath(arg)
          if (spelled) out.push({ node: arg, ...spelled, via: 'setPath' })
        } else if (callee.name.text === 'set' && arg && ts.isObjectLiteralExpression(arg)) {
          for (const property of arg.properties) {
            if (ts.isShorthandPropertyAssignment(property)) out.push({ node: property.name, path: property.name.text, open: false, via: 'set' })
            else if (ts.isPropertyAssignment(property)) {
              const name = property.name
              if (ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isNumericLiteral(name)) out.push({ node: name, path: name.text, open: false, via: 'set' })
              else if (ts.isComputedPropertyName(name)) {
                const spelled = spelledPath(unwrap(name.expression))
                if (spelled) out.push({ node: name, ...spelled, via: 'set' })
              }
            }
          }
        }
      }
    }
    ts.forEachChild(node, visit)
  }
  if (fn.body) visit(fn.body)
  return out.filter((p) => p.path !== '')
}

/** A path spelled as a string or template literal: the whole of it, or the dotted head before a substitution. */
function spelledPath(node: ts.Node): { path: string; open: boolean } | null {
  if (ts.isStringLiteralLike(node)) return { path: node.text, open: false }
  if (ts.isTemplateExpression(node)) {
    const head = node.head.text.split('.')
    return { path: head.slice(0, -1).join('.'), open: true }
  }
  return null
}

function unwrap(node: ts.Node): ts.Node {
  let current = node
  while (ts.isParenthesizedExpression(current) || ts.isAsExpression(current) || ts.isSatisfiesExpression(current) || ts.isNonNullExpression(current)) current = current.expression
  return current
}
