/** Reading and writing dotted fact paths. Plain property walks: no JSONPath, no evaluation. */
import type { Json } from './match.js'

const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor'])

/** Splits a dotted path, refusing empty segments and prototype keys. */
export function splitPath(path: string): string[] {
  const parts = path.split('.')
  for (const part of parts) {
    if (part === '' || FORBIDDEN.has(part)) throw new Error(`fact path ${JSON.stringify(path)} is invalid: empty segment or reserved name ${JSON.stringify(part)}`)
  }
  return parts
}

/** The value at `path`, or undefined. */
export function readPath(facts: unknown, path: string): unknown {
  let node: unknown = facts
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null || !Object.prototype.hasOwnProperty.call(node, part)) return undefined
    node = (node as Record<string, unknown>)[part]
  }
  return node
}

/** Writes `value` at `path`, creating objects on the way; throws when the way crosses a non-object. */
export function writePath(facts: Record<string, Json>, path: string, value: Json): void {
  const parts = splitPath(path)
  let node: Record<string, Json> | Json[] = facts
  for (let i = 0; i < parts.length - 1; i++) {
    const part = parts[i]!
    const next: Json | undefined = (node as Record<string, Json>)[part]
    if (next === undefined || next === null) {
      const created: Record<string, Json> = {}
      ;(node as Record<string, Json>)[part] = created
      node = created
    } else if (typeof next === 'object') {
      node = next
    } else {
      throw new Error(`cannot set ${path}: ${parts.slice(0, i + 1).join('.')} holds a ${typeof next}, not an object`)
    }
  }
  ;(node as Record<string, Json>)[parts[parts.length - 1]!] = value
}

/** Structural equality of JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const bs = b as unknown[]
    return a.length === bs.length && a.every((v, i) => jsonEqual(v, bs[i]))
  }
  const ak = Object.keys(a)
  const bo = b as Record<string, unknown>
  if (ak.length !== Object.keys(bo).length) return false
  return ak.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && jsonEqual((a as Record<string, unknown>)[k], bo[k]))
}

/** True when a change at `changed` may alter the value read at `read` (same path, ancestor or descendant). */
export function pathsOverlap(read: string, changed: string): boolean {
  if (read === changed) return true
  if (read.length > changed.length) return read.startsWith(changed) && read[changed.length] === '.'
  return changed.startsWith(read) && changed[read.length] === '.'
}
