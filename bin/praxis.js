#!/usr/bin/env node
// Entry point of the `praxis` command. Praxis services are TypeScript, so the CLI runs under tsx's
// loader; this shim registers it and hands over to the CLI proper.
import { register } from 'tsx/esm/api'
register()
await import('../platform/cli/main.ts')
