/** Every error code the source uses is documented in docs/errors.md, and every platform code has its HTTP status there. */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERRORS } from '../platform/errors.js'

const docs = readFileSync('docs/errors.md', 'utf8')

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name)
    if (statSync(file).isDirectory()) return sources(file)
    return file.endsWith('.ts') && !file.endsWith('.test.ts') ? [file] : []
  })
}

describe('error codes', () => {
  it('documents every code used in sdk/, platform/ and codegen/', () => {
    const used = new Set(['sdk', 'platform', 'codegen'].flatMap(sources).flatMap((f) => readFileSync(f, 'utf8').match(/PRX_[A-Z_]+/g) ?? []))
    expect(used.size).toBeGreaterThan(20)
    const missing = [...used].filter((code) => !docs.includes(`\`${code}\``))
    expect(missing).toEqual([])
  })

  it('documents each platform code with its HTTP status', () => {
    for (const [code, { status }] of Object.entries(ERRORS)) {
      const row = docs.split('\n').find((line) => line.startsWith(`| \`${code}\``))
      expect(row, code).toBeDefined()
      if (code !== 'PRX_FUNCTION_UNKNOWN') expect(row).toContain(`| ${status} |`)
    }
  })
})
