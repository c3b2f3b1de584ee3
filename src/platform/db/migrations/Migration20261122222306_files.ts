import { Migration } from '@mikro-orm/migrations';

export class Migration20261122222306_files extends Migration {
  override name = 'Migration20261122222306_files';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "files" ("id" uuid not null, "owner_id" uuid not null, "directory" varchar(1024) not null, "name" varchar(255) not null, "size" bigint not null, "content_type" varchar(255) not null, "declared_content_type" varchar(255) not null, "sha256" varchar(64) null, "declared_sha256" varchar(64) null, "status" text not null, "object_key" varchar(512) not null, "upload_mode" text not null, "upload_id" varchar(1024) null, "part_size" bigint null, "upload_expires_at" timestamptz null, "job_id" uuid null, "request_id" varchar(128) null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create index "files_job_id_index" on "files" ("job_id");`);
    this.addSql(`create index "files_owner_id_directory_name_id_index" on "files" ("owner_id", "directory", "name", "id");`);
    this.addSql(`create index "files_status_upload_expires_at_index" on "files" ("status", "upload_expires_at");`);
    this.addSql(`create unique index "files_owner_path_unique" on "files" ("owner_id", "directory", "name") where "status" <> 'failed';`);
    this.addSql(`alter table "files" add constraint "files_owner_id_request_id_unique" unique ("owner_id", "request_id");`);

    this.addSql(
      `alter table "files" add constraint "files_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on delete cascade;`,
    );
    this.addSql(
      `alter table "files" add constraint "files_job_id_foreign" foreign key ("job_id") references "jobs" ("id") on delete set null;`,
    );
    this.addSql(`alter table "files" add constraint "files_status_check" check ("status" in ('uploading', 'available', 'failed'));`);
    this.addSql(`alter table "files" add constraint "files_upload_mode_check" check ("upload_mode" in ('single', 'multipart', 'stream'));`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "files" cascade;`);
  }
}
