import { Migration } from '@mikro-orm/migrations';

export class Migration20261122221837_jobs extends Migration {
  override name = 'Migration20261122221837_jobs';

  override up(): void | Promise<void> {
    // Trigram indexes make substring search over job names, labels and params fast.
    this.addSql(`create extension if not exists pg_trgm;`);
    this.addSql(
      `create table "events" ("id" bigserial primary key, "sequence" bigint null, "created_at" timestamptz not null, "kind" varchar(64) not null, "subject_id" uuid not null, "owner_id" uuid not null, "payload" jsonb not null);`,
    );
    this.addSql(`alter table "events" add constraint "events_sequence_unique" unique ("sequence");`);
    this.addSql(`create index "events_subject_id_sequence_index" on "events" ("subject_id", "sequence");`);
    this.addSql(`create index "events_unsequenced" on "events" ("id") where "sequence" is null;`);

    this.addSql(
      `create table "event_positions" ("id" int not null, "last_sequence" bigint not null, "pruned_through" bigint not null, primary key ("id"));`,
    );
    this.addSql(`insert into "event_positions" ("id", "last_sequence", "pruned_through") values (1, 0, 0);`);

    this.addSql(
      `create table "queue_states" ("name" varchar(64) not null, "paused" boolean not null, "updated_at" timestamptz not null, "updated_by" varchar(64) null, primary key ("name"));`,
    );

    this.addSql(
      `create table "jobs" ("id" uuid not null, "owner_id" uuid not null, "type" varchar(64) not null, "name" varchar(200) not null, "params" jsonb not null, "labels" jsonb not null, "search_text" text not null, "priority" int not null, "status" text not null, "progress_percent" int not null default 0, "progress_message" varchar(500) not null default '', "attempt" int not null default 0, "max_attempts" int not null, "input_file_ids" jsonb not null, "output_file_ids" jsonb not null, "result" jsonb null, "error_message" text null, "error_code" varchar(64) null, "created_at" timestamptz not null, "started_at" timestamptz null, "finished_at" timestamptz null, "updated_at" timestamptz not null, "run_after" timestamptz null, "queued_at" timestamptz null, "cancel_requested" boolean not null default false, "cancel_reason" varchar(500) null, "abandoned" boolean not null default false, "request_id" varchar(128) null, "queue_job_id" uuid null, "queue_retry_count" int null, "worker_id" varchar(128) null, "version" int not null default 1, "log_count" int not null default 0, primary key ("id"));`,
    );
    this.addSql(`create index "jobs_owner_id_id_index" on "jobs" ("owner_id", "id");`);
    this.addSql(`create index "jobs_type_status_priority_queued_at_index" on "jobs" ("type", "status", "priority", "queued_at");`);
    this.addSql(`create index "jobs_status_finished_at_index" on "jobs" ("status", "finished_at");`);
    this.addSql(`create index "jobs_search_text_trgm" on "jobs" using gin ("search_text" gin_trgm_ops);`);
    this.addSql(`alter table "jobs" add constraint "jobs_owner_id_request_id_unique" unique ("owner_id", "request_id");`);

    this.addSql(
      `create table "job_log_lines" ("job_id" uuid not null, "sequence" int not null, "created_at" timestamptz not null, "level" text not null, "message" text not null, "attempt" int not null, primary key ("job_id", "sequence"));`,
    );

    this.addSql(
      `alter table "jobs" add constraint "jobs_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on delete cascade;`,
    );
    this.addSql(
      `alter table "jobs" add constraint "jobs_status_check" check ("status" in ('queued', 'running', 'succeeded', 'failed', 'cancelled'));`,
    );

    this.addSql(
      `alter table "job_log_lines" add constraint "job_log_lines_job_id_foreign" foreign key ("job_id") references "jobs" ("id") on delete cascade;`,
    );
    this.addSql(
      `alter table "job_log_lines" add constraint "job_log_lines_level_check" check ("level" in ('debug', 'info', 'warn', 'error'));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "job_log_lines" drop constraint "job_log_lines_job_id_foreign";`);

    this.addSql(`drop table if exists "events" cascade;`);
    this.addSql(`drop table if exists "event_positions" cascade;`);
    this.addSql(`drop table if exists "queue_states" cascade;`);
    this.addSql(`drop table if exists "jobs" cascade;`);
    this.addSql(`drop table if exists "job_log_lines" cascade;`);
  }
}
