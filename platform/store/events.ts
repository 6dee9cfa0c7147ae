/** The instance inbox: events an evaluation will consume (platform/queue appends them with the evaluate job that wakes it). */
import type pg from 'pg'

type Queryable = Pick<pg.PoolClient, 'query'>

/** Whether a signal with this id was delivered to the instance before. */
export async function signalDelivered(client: Queryable, tenantId: string, instanceId: string, signalId: string): Promise<boolean> {
  const { rowCount } = await client.query("select 1 from praxis.events where tenant_id = $1 and instance_id = $2 and kind = 'signal' and dedupe_key = $3", [tenantId, instanceId, signalId])
  return (rowCount ?? 0) > 0
}
