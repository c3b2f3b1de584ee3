import { Migration } from '@mikro-orm/migrations';

/**
 * Every event row is written twice: inserted without a position, then updated once by the
 * sequencer. With full pages the new version lands on another page, and the WAL record
 * carries the whole row again, snapshot and all. With pages filled to half by inserts, the
 * sequencer's version fits beside the old one: PostgreSQL then logs only the bytes that
 * differ (the position), and touches one page instead of two. The table takes about the
 * same room as before, as each event had two versions in it anyway until pruned.
 */
export class Migration20261203161000_event_fillfactor extends Migration {
  override name = 'Migration20261203161000_event_fillfactor';

  override up(): void | Promise<void> {
    this.addSql(`alter table "events" set (fillfactor = 50);`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "events" reset (fillfactor);`);
  }
}
