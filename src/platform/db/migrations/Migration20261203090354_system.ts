import { Migration } from '@mikro-orm/migrations';

export class Migration20261203090354_system extends Migration {
  override name = 'Migration20261203090354_system';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "pool_controls" ("queue" varchar(64) not null, "stopped" boolean not null, "restarts" int not null default 0, "updated_at" timestamptz not null, "updated_by" varchar(64) null, primary key ("queue"));`,
    );

    this.addSql(
      `create table "server_instances" ("id" uuid not null, "role" text not null, "host" varchar(255) not null, "pid" int not null, "version" varchar(64) not null, "commit" varchar(64) not null, "started_at" timestamptz not null, "heartbeat_at" timestamptz not null, "pools" jsonb not null, primary key ("id"));`,
    );
    this.addSql(`create index "server_instances_heartbeat_at_index" on "server_instances" ("heartbeat_at");`);

    this.addSql(`alter table "server_instances" add constraint "server_instances_role_check" check ("role" in ('api', 'worker', 'all'));`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "pool_controls" cascade;`);
    this.addSql(`drop table if exists "server_instances" cascade;`);
  }
}
