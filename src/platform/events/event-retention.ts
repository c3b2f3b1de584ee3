import type { EntityManager } from '../db/orm.ts';

/**
 * Deletes the events older than `retentionMs`, as a prefix of the log (everything up to
 * the newest old event), and records how far the log now starts, so that a stream
 * resuming from before that point is told to resync instead of silently missing events.
 */
export async function pruneEvents(em: EntityManager, retentionMs: number): Promise<number> {
  return em.transactional(async (tx) => {
    const [row] = await tx.execute<{ deleted: string }[]>(
      `with cutoff as (
         select max(sequence) as sequence from events
          where sequence is not null and created_at < now() - (? * interval '1 millisecond')),
       pruned as (
         delete from events where sequence <= (select sequence from cutoff) returning sequence),
       moved as (
         update event_positions set pruned_through = greatest(pruned_through, (select max(sequence) from pruned))
          where id = 1 and exists (select 1 from pruned))
       select count(*) as deleted from pruned`,
      [retentionMs],
    );
    return Number(row?.deleted ?? 0);
  });
}
