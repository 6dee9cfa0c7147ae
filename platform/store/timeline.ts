/** Reading an instance's timeline, in order, with a cursor. */
import type pg from 'pg'

type Queryable = Pick<pg.PoolClient, 'query'>

export interface TimelineEntry { id: string; revision: number; kind: string; rule: string | null; data: unknown; at: string }

export async function readTimeline(client: Queryable, tenantId: string, instanceId: string, options: { after?: string | undefined; limit: number }): Promise<TimelineEntry[]> {
  const { rows } = await client.query<TimelineEntry>(
    `select id::text, revision, kind, rule, data, at from praxis.timeline
     where tenant_id = $1 and instance_id = $2 and ($3::bigint is null or praxis.timeline.id > $3) order by praxis.timeline.id limit $4`,
    [tenantId, instanceId, options.after ?? null, options.limit])
  return rows
}
