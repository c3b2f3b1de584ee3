import { Migration } from '@mikro-orm/migrations';

export class Migration20261203090051_job_types extends Migration {
  override name = 'Migration20261203090051_job_types';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "job_type_declarations" ("name" varchar(64) not null, "description" varchar(2000) not null, "params_schema" jsonb not null, "max_attempts" int not null, "timeout_ms" int not null, "lease_ms" int not null, "retry_delay_ms" int not null, "retry_backoff" boolean not null, "retry_delay_max_ms" int not null, "min_input_files" int not null, "max_input_files" int not null, "version" int not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "created_by" varchar(64) not null, "updated_by" varchar(64) not null, primary key ("name"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "job_type_declarations" cascade;`);
  }
}
