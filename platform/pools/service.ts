/** A service folder on disk: `workflows.ts` (the rules side) and `functions.ts` (what workers run). */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { isFunctionRef, type FunctionDefinition } from '../../sdk/index.js'

export interface LoadedService {
  /** The folder name, e.g. `video-encoding`. */
  name: string
  dir: string
  functions: FunctionDefinition[]
}

/** Imports a service's functions.ts and collects every exported function definition. */
export async function loadService(dir: string): Promise<LoadedService> {
  const abs = path.resolve(dir)
  const name = path.basename(abs)
  const file = ['functions.ts', 'functions.js'].map((f) => path.join(abs, f)).find((f) => existsSync(f))
  const functions: FunctionDefinition[] = []
  if (file) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>
    for (const value of Object.values(mod)) {
      // Tagged with the service, whose generated stubs name it too: its pools are its own.
      if (isFunctionRef(value) && typeof (value as FunctionDefinition).handler === 'function') functions.push(Object.freeze({ ...(value as FunctionDefinition), service: name }))
    }
  }
  return { name, dir: abs, functions }
}
