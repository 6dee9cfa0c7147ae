/** platform/api: the fastify REST API. */
export { buildApi, type ApiOptions } from './server.js'
