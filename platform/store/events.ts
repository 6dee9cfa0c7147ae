/** The instance inbox: events an evaluation will consume (platform/queue appends them with the evaluate job that wakes it). */
import type pg from 'pg'

type Queryable = Pick<pg.PoolClient, 'query'>

/** Whether a signal with this id was delivered to the instance before. */
export async function signalDelivered(client: Queryable, tenantId: string, instanceId: string, signalId: string): Promise<boolean> {
  const { rowCount } = await client.query("select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and kind = 'signal' and dedupe_key = $3", [tenantId, instanceId, signalId])
  return (rowCount ?? 0) > 0
}

/** Whether the instance has events no evaluation consumed yet (read without a lock). */
export async function hasPendingEvents(client: Queryable, tenantId: string, instanceId: string): Promise<boolean> {
  const { rowCount } = await client.query({ name: 'praxis_has_pending_events', text: 'select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and consumed_at is null limit 1', values: [tenantId, instanceId] })
  return (rowCount ?? 0) > 0
}
