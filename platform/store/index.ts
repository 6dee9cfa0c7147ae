/** platform/store: the only code that speaks SQL to the praxis schema. */
export * from './database.js'
export * from './migrate.js'
export * from './instances.js'
export * from './invocations.js'
export * from './events.js'
export * from './bundles.js'
export * from './tenants.js'
export * from './timeline.js'
