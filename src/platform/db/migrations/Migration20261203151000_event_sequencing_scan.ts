import { Migration } from '@mikro-orm/migrations';

/**
 * `sequence_events` finds pending events by walking the partial index of unsequenced
 * events in id order. Every event enters that index (it is inserted unsequenced) and its
 * entry goes dead when it is numbered; a bitmap scan, which the planner preferred, visits
 * every dead entry again on each run (thousands between two vacuums) and never marks them,
 * while an index scan marks them dead as it passes, so later runs skip them.
 */
export class Migration20261203151000_event_sequencing_scan extends Migration {
  override name = 'Migration20261203151000_event_sequencing_scan';

  override up(): void | Promise<void> {
    this.addSql(`alter function "sequence_events"(bigint, int, text) set enable_bitmapscan = off;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter function "sequence_events"(bigint, int, text) reset enable_bitmapscan;`);
  }
}
