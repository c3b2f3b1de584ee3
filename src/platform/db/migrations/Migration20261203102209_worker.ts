import { Migration } from '@mikro-orm/migrations';

export class Migration20261203102209_worker extends Migration {
  override name = 'Migration20261203102209_worker';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "job_leases" ("id" uuid not null, "job_id" uuid not null, "attempt" int not null, "worker_id" varchar(128) not null, "account_id" uuid null, "queue" varchar(64) not null, "queue_entry_id" uuid not null, "lease_ms" int not null, "claimed_at" timestamptz not null, "expires_at" timestamptz not null, "deadline_at" timestamptz not null, "ended_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "job_leases_job_id_index" on "job_leases" ("job_id");`);
    this.addSql(`create index "job_leases_account_id_index" on "job_leases" ("account_id");`);
    this.addSql(`create index "job_leases_active_expiry" on "job_leases" ("expires_at") where "ended_at" is null;`);
    this.addSql(`create index "job_leases_active_worker" on "job_leases" ("worker_id") where "ended_at" is null;`);

    this.addSql(
      `create table "external_workers" ("id" varchar(100) not null, "account_id" uuid not null, "queues" jsonb not null, "stopped" boolean not null default false, "restart_pending" boolean not null default false, "registered_at" timestamptz not null, "last_seen_at" timestamptz not null, "waiting_until" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "external_workers_account_id_index" on "external_workers" ("account_id");`);
    this.addSql(`create index "external_workers_last_seen_at_index" on "external_workers" ("last_seen_at");`);

    this.addSql(
      `alter table "job_leases" add constraint "job_leases_job_id_foreign" foreign key ("job_id") references "jobs" ("id") on delete cascade;`,
    );
    this.addSql(
      `alter table "job_leases" add constraint "job_leases_account_id_foreign" foreign key ("account_id") references "users" ("id") on delete set null;`,
    );

    this.addSql(
      `alter table "external_workers" add constraint "external_workers_account_id_foreign" foreign key ("account_id") references "users" ("id") on delete cascade;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "job_leases" cascade;`);
    this.addSql(`drop table if exists "external_workers" cascade;`);
  }
}
