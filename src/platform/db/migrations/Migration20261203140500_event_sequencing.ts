import { Migration } from '@mikro-orm/migrations';

/**
 * The sequencer's run as one function, called in one round trip in its own transaction:
 * it takes the sequencers' lock, then (each statement of a volatile function seeing what
 * committed before it, the lock holder's predecessors included) numbers pending events,
 * moves the position and notifies. It replaces a client-side transaction of six round trips.
 */
export class Migration20261203140500_event_sequencing extends Migration {
  override name = 'Migration20261203140500_event_sequencing';

  override up(): void | Promise<void> {
    this.addSql(`create or replace function "sequence_events"(lock_key bigint, batch_size int, channel text)
  returns table (assigned bigint, last_sequence bigint)
  language plpgsql volatile as $$
declare
  assigned_count bigint;
  last_assigned bigint;
begin
  perform pg_advisory_xact_lock(lock_key);
  with base as (select p.last_sequence as start from event_positions p where p.id = 1),
       pending as (
         select e.id, row_number() over (order by e.id) as n from events e where e.sequence is null order by e.id limit batch_size),
       numbered as (
         update events e set sequence = base.start + pending.n from pending, base where e.id = pending.id returning e.sequence)
  select count(*), max(numbered.sequence) into assigned_count, last_assigned from numbered;
  if assigned_count > 0 then
    update event_positions set last_sequence = last_assigned where id = 1;
    perform pg_notify(channel, last_assigned::text);
  end if;
  return query select assigned_count, last_assigned;
end
$$;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop function if exists "sequence_events"(bigint, int, text);`);
  }
}
