#!/usr/bin/env node
// Entry point of the `praxis` command: loads the CLI proper (platform/cli/main.ts) with no more
// than the command needs, so `praxis start`, `praxis inspect` and `--help` answer fast.
//
// Which CLI: an installed package ships the compiled CLI in dist/ and may not ship the sources, so
// dist/platform/cli/main.js is loaded when it exists and ../platform/cli/main.ts does not. This
// repository runs the TypeScript sources: main.ts and ./client.ts through tsx's require hook, which
// works in this thread (a few ms), removed once they are loaded; tsx's module loader, which starts a
// thread of its own (60 ms and more), is registered by main.ts only for the commands that import
// more (and, compiled, only for those that load a service's TypeScript: codegen, check, deploy,
// dev, worker, pools).
//
// Commands that run rule code in this process need Node's start-up snapshot off (the rule sandbox,
// isolated-vm): dev (its API loads bundles), worker (evaluations), codegen, check and deploy (a
// bundle describes itself in a sandbox isolate). Started without --no-node-snapshot, such a
// command starts the CLI again with it (one more Node start-up), passes signals on, so Ctrl-C
// stops it as it would, and exits as the child did. The other commands never pay for that.
//
// A signal sent to the whole process group (Ctrl-C in a terminal) reaches such a child twice: from
// the terminal, and passed on. The child takes a repeat within a second as the same request to
// stop, so a command that stops gracefully on its first SIGINT (`process.once`) is not killed by
// the second, as it would be with no listener left.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath, URL } from 'node:url'

const SANDBOX = new Set(['dev', 'worker', 'codegen', 'deploy', 'check', 'init'])
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP']
/** Set in the child to its parent's pid, so a grandchild (a worker of praxis dev) never takes it for its own. */
const RELAYED = 'PRAXIS_SIGNALS_RELAYED_BY'
const SAME_SIGNAL_MS = 1000

const args = process.argv.slice(2)
// Options go after the command, so the command is the first argument (if it is no option).
const command = args[0] !== undefined && !args[0].startsWith('-') ? args[0] : undefined
const snapshotOff = process.execArgv.includes('--no-node-snapshot') || (process.env.NODE_OPTIONS ?? '').split(/\s+/).includes('--no-node-snapshot')

// Help runs no rule code.
const help = args.includes('--help') || args.includes('-h')

if (command !== undefined && SANDBOX.has(command) && !snapshotOff && !help) {
  const { spawn } = await import('node:child_process')
  const { constants } = await import('node:os')
  const child = spawn(process.execPath, ['--no-node-snapshot', ...process.execArgv, fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit', env: { ...process.env, [RELAYED]: String(process.pid) },
  })
  for (const signal of SIGNALS) process.on(signal, () => child.kill(signal))
  child.on('error', (error) => {
    process.stderr.write(`error: cannot start ${process.execPath} --no-node-snapshot for praxis ${command}: ${error.message}\n`)
    process.exit(1)
  })
  // A child ended by a signal: the shell's convention, 128 + the signal's number.
  child.on('exit', (code, signal) => process.exit(code ?? 128 + ((signal && constants.signals[signal]) || 1)))
} else {
  if (process.env[RELAYED] === String(process.ppid)) {
    // The first of a signal goes to the command's own listeners, or, with none, does what it does
    // by default (the process ends by it); a repeat within SAME_SIGNAL_MS is dropped.
    for (const signal of SIGNALS) {
      let last = 0
      const listener = () => {
        const repeat = Date.now() - last < SAME_SIGNAL_MS
        last = Date.now()
        if (repeat || process.listenerCount(signal) > 1) return
        process.removeListener(signal, listener)
        process.kill(process.pid, signal)
      }
      process.on(signal, listener)
    }
  }
  const source = fileURLToPath(new URL('../platform/cli/main.ts', import.meta.url))
  const compiled = new URL('../dist/platform/cli/main.js', import.meta.url)
  if (!existsSync(source) && existsSync(compiled)) await import(compiled.href)
  else {
    const require = createRequire(import.meta.url)
    // Loaded before the hook, which would put each of its files through its transform.
    require('commander')
    const unregister = require('tsx/cjs/api').register()
    try {
      require(source)
    } finally {
      unregister()
    }
  }
}
