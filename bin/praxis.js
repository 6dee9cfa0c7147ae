#!/usr/bin/env -S node --no-node-snapshot
// Entry point of the `praxis` command. Praxis services are TypeScript, so the CLI runs under tsx's
// loader; this shim registers it and hands over to the CLI proper.
//
// The rule sandbox (isolated-vm) needs Node's start-up snapshot off. The shebang passes the flag
// when the command is run directly; started any other way without it, the CLI starts itself again
// with it (one extra Node start-up) and passes signals on, so Ctrl-C stops it as it would.
if (!process.execArgv.includes('--no-node-snapshot') && !(process.env.NODE_OPTIONS ?? '').includes('--no-node-snapshot')) {
  const { spawn } = await import('node:child_process')
  const { fileURLToPath } = await import('node:url')
  const child = spawn(process.execPath, ['--no-node-snapshot', ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../platform/cli/main.ts')
}
