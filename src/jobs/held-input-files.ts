import type { EntityManager } from '../platform/db/orm.ts';

/**
 * Whether `fileId` is an input of a job whose lease `accountId` holds now: what an
 * external worker may read of another account's files. A lease that ended or expired
 * grants nothing, even before the sweeper has ended it.
 */
export async function heldInputFile(em: EntityManager, accountId: string, fileId: string): Promise<boolean> {
  const rows = await em.execute<unknown[]>(
    `select 1 from job_leases l join jobs j on j.id = l.job_id
      where l.account_id = ? and l.ended_at is null and l.expires_at > now() and j.input_file_ids @> ?::jsonb
      limit 1`,
    [accountId, JSON.stringify([fileId])],
  );
  return rows.length > 0;
}
