import { Migration } from '@mikro-orm/migrations';

/**
 * Fewer index entries per job transition. A status change can never be a HOT update (every
 * index of `jobs` that matters names `status`), so each one inserts an entry in every index
 * of the table. The search text and its trigram index move to `job_search`, written only when
 * a job is created or renamed or relabelled; the status indexes become partial, so a row
 * enters only those that cover its state (queued, queued or running, finished); the
 * idempotency key's unique index leaves out rows without a key.
 */
export class Migration20261203150000_job_search extends Migration {
  override name = 'Migration20261203150000_job_search';

  override up(): void | Promise<void> {
    this.addSql(`create table "job_search" ("job_id" uuid not null, "search_text" text not null, primary key ("job_id"));`);
    this.addSql(
      `alter table "job_search" add constraint "job_search_job_id_foreign" foreign key ("job_id") references "jobs" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(`insert into "job_search" ("job_id", "search_text") select "id", "search_text" from "jobs";`);
    this.addSql(`create index "job_search_text_trgm" on "job_search" using gin ("search_text" gin_trgm_ops);`);
    this.addSql(`drop index "jobs_search_text_trgm";`);
    this.addSql(`alter table "jobs" drop column "search_text";`);

    this.addSql(`drop index "jobs_type_status_priority_queued_at_index";`);
    this.addSql(`create index "jobs_queued" on "jobs" ("type", "priority", "queued_at") where "status" = 'queued';`);
    this.addSql(`drop index "jobs_status_finished_at_index";`);
    this.addSql(`create index "jobs_unfinished" on "jobs" ("type") where "status" in ('queued', 'running');`);
    this.addSql(`create index "jobs_finished_at" on "jobs" ("finished_at") where "finished_at" is not null;`);
    this.addSql(`alter table "jobs" drop constraint "jobs_owner_id_request_id_unique";`);
    this.addSql(
      `create unique index "jobs_owner_id_request_id_unique" on "jobs" ("owner_id", "request_id") where "request_id" is not null;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop index "jobs_owner_id_request_id_unique";`);
    this.addSql(`alter table "jobs" add constraint "jobs_owner_id_request_id_unique" unique ("owner_id", "request_id");`);
    this.addSql(`drop index "jobs_finished_at";`);
    this.addSql(`drop index "jobs_unfinished";`);
    this.addSql(`create index "jobs_status_finished_at_index" on "jobs" ("status", "finished_at");`);
    this.addSql(`drop index "jobs_queued";`);
    this.addSql(`create index "jobs_type_status_priority_queued_at_index" on "jobs" ("type", "status", "priority", "queued_at");`);

    this.addSql(`alter table "jobs" add column "search_text" text not null default '';`);
    this.addSql(`update "jobs" j set "search_text" = s."search_text" from "job_search" s where s."job_id" = j."id";`);
    this.addSql(`alter table "jobs" alter column "search_text" drop default;`);
    this.addSql(`create index "jobs_search_text_trgm" on "jobs" using gin ("search_text" gin_trgm_ops);`);
    this.addSql(`drop table if exists "job_search" cascade;`);
  }
}
