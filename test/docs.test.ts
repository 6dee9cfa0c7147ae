/**
 * The project's docs stand alone: every Markdown file in the repository links only to files and
 * headings that exist in it, and none points outside it (on main, the README and docs/errors.md
 * sent readers to a design document beside the repository). The pages a user needs exist.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

/** The repository's own Markdown files (tracked or new, not ignored). */
const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.md'], { encoding: 'utf8' })
  .split('\n').filter((f) => f && !f.startsWith('node_modules/') && existsSync(f))

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
const anchor = (heading: string): string => heading.trim().toLowerCase().replace(/`/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  let fenced = false
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line)
    if (!m) continue
    const base = anchor(m[1]!)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** Inline links and images outside code: [text](target). */
function links(file: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = []
  let fenced = false
  readFileSync(file, 'utf8').split('\n').forEach((text, i) => {
    if (/^\s*```/.test(text)) fenced = !fenced
    if (fenced) return
    for (const m of text.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) found.push({ target: m[1]!, line: i + 1 })
  })
  return found
}

describe('the docs', () => {
  it('exist: README, architecture, tutorial, statuses, always-on deploys, CLI reference, install, codegen, errors, benchmarks', () => {
    for (const page of ['README.md', 'docs/architecture.md', 'docs/tutorial.md', 'docs/statuses.md', 'docs/always-on.md', 'docs/cli.md', 'docs/install.md', 'docs/codegen.md', 'docs/errors.md', 'docs/benchmarks.md']) {
      expect(files, page).toContain(page)
    }
  })

  it('link only to files and headings in the repository, and never outside it', () => {
    expect(files.length).toBeGreaterThan(10)
    const problems: string[] = []
    for (const file of files) {
      const text = readFileSync(file, 'utf8')
      if (/\.\.\/shared|DESIGN\.md/.test(text)) problems.push(`${file}: mentions a document outside the repository`)
      for (const { target, line } of links(file)) {
        if (/^[a-z][a-z+.-]*:/i.test(target)) {
          // Web links are allowed only to localhost (a running Praxis); the docs stand alone.
          if (!/^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(target)) problems.push(`${file}:${line}: links outside the repository: ${target}`)
          continue
        }
        const [pathPart, hash] = target.split('#') as [string, string | undefined]
        const resolved = pathPart === '' ? file : path.normalize(path.join(path.dirname(file), decodeURIComponent(pathPart)))
        if (resolved.startsWith('..') || path.isAbsolute(resolved)) {
          problems.push(`${file}:${line}: ${target} leaves the repository`)
          continue
        }
        if (!existsSync(resolved)) {
          problems.push(`${file}:${line}: ${target}: no such file`)
          continue
        }
        if (hash && resolved.endsWith('.md') && statSync(resolved).isFile() && !anchors(resolved).has(hash)) problems.push(`${file}:${line}: ${target}: no heading #${hash} in ${resolved}`)
      }
    }
    expect(problems).toEqual([])
  })

})
