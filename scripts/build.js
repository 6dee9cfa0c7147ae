// `npm run build` (and `npm pack`, through prepack): compiles sdk/, platform/ and codegen/ to dist/
// (ESM JavaScript and .d.ts, tsconfig.build.json), then gives the compiled code the files it reads
// next to itself, and checks that every file package.json's exports and bin name is there.
//
// Compiled code finds files by `new URL('<relative>', import.meta.url)`. From dist/ those paths
// point into dist/, so each one is checked here: SQL migrations are copied. (Paths that differ
// between the sources and dist/ are chosen in the code by `import.meta.url.endsWith('.ts')`.) A
// literal path that is neither found nor known fails the build, naming the file that reads it.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = path.join(root, 'dist')
const t0 = Date.now()

rmSync(dist, { recursive: true, force: true })
try {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root })
} catch {
  process.stderr.write('build failed: tsc -p tsconfig.build.json reported the errors above; fix them and run `npm run build` again\n')
  process.exit(1)
}

/** Files the compiled code reads, by the relative path it reads them at. */
const KNOWN = {
  // platform/store/migrate.ts: the migrations, applied in order.
  './sql/': (target) => cpSync(path.join(root, 'platform', 'store', 'sql'), target, { recursive: true }),
}
/** Paths only the repository has: what uses them says so when they are missing. */
const REPOSITORY_ONLY = {
  // platform/cli/dev.ts: `praxis dev` without service folders deploys the repository's examples.
  '../../examples/': 'the examples `praxis dev` runs when given no service folder',
}

const problems = []
const handled = []
for (const file of walk(dist).filter((f) => f.endsWith('.js'))) {
  const text = readFileSync(file, 'utf8')
  for (const match of text.matchAll(/new URL\((['"])([^'"]+)\1,\s*import\.meta\.url\)/g)) {
    const relative = match[2]
    const target = fileURLToPath(new URL(relative, `file://${file}`))
    if (existsSync(target)) continue
    if (KNOWN[relative]) {
      KNOWN[relative](target)
      handled.push(`${path.relative(root, target)} (read by ${path.relative(root, file)})`)
    } else if (!REPOSITORY_ONLY[relative]) {
      problems.push(`${path.relative(root, file)} reads ${relative} (${path.relative(root, target)}), which the build does not provide: copy it in scripts/build.js, or resolve it from the package root`)
    }
  }
}

// Everything package.json points users at must exist.
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin ?? {}), ...Object.values(pkg.exports ?? {}).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e)))]
for (const target of targets.filter(Boolean)) {
  if (!existsSync(path.join(root, target))) problems.push(`package.json names ${target}, which the build did not produce`)
}

if (problems.length > 0) {
  process.stderr.write(`build failed:\n${problems.map((p) => `  ${p}`).join('\n')}\n`)
  process.exit(1)
}
const files = walk(dist)
const bytes = files.reduce((n, f) => n + statSync(f).size, 0)
process.stdout.write(`built dist/: ${files.length} files, ${(bytes / 1024).toFixed(0)} KB, in ${Date.now() - t0} ms${handled.length ? `; provided ${handled.join(', ')}` : ''}\n`)

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
}
