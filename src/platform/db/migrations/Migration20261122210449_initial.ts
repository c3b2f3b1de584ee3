import { Migration } from '@mikro-orm/migrations';

export class Migration20261122210449_initial extends Migration {
  override name = 'Migration20261122210449_initial';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "audit_events" ("id" uuid not null, "created_at" timestamptz not null, "actor_id" uuid null, "actor_username" varchar(64) null, "action" varchar(200) not null, "target" varchar(512) null, "client_address" varchar(64) not null, "request_id" varchar(128) not null, "outcome" text not null, "error_code" varchar(32) null, "reason" varchar(128) null, primary key ("id"));`,
    );
    this.addSql(`create index "audit_events_created_at_index" on "audit_events" ("created_at");`);
    this.addSql(`create index "audit_events_actor_id_created_at_index" on "audit_events" ("actor_id", "created_at");`);
    this.addSql(`create index "audit_events_action_created_at_index" on "audit_events" ("action", "created_at");`);
    this.addSql(`create index "audit_events_target_created_at_index" on "audit_events" ("target", "created_at");`);

    this.addSql(
      `create table "rate_limit_counters" ("key" varchar(255) not null, "points" int not null default 0, "expire" bigint null, primary key ("key"));`,
    );

    this.addSql(
      `create table "settings" ("key" varchar(128) not null, "value" jsonb not null, "updated_by_id" uuid null, "updated_by_username" varchar(64) null, "updated_at" timestamptz not null, primary key ("key"));`,
    );

    this.addSql(
      `create table "signing_keys" ("id" varchar(64) not null, "algorithm" varchar(16) not null, "public_jwk" jsonb not null, "private_jwk" jsonb not null, "created_at" timestamptz not null, "retired_at" timestamptz null, primary key ("id"));`,
    );

    this.addSql(
      `create table "users" ("id" uuid not null, "username" varchar(64) not null, "email" varchar(320) not null, "password_hash" text not null, "role" text not null, "active" boolean not null default true, "created_at" timestamptz not null, "updated_at" timestamptz not null, "last_login_at" timestamptz null, "last_seen_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`alter table "users" add constraint "users_username_unique" unique ("username");`);
    this.addSql(`alter table "users" add constraint "users_email_unique" unique ("email");`);

    this.addSql(
      `create table "sessions" ("id" uuid not null, "user_id" uuid not null, "created_at" timestamptz not null, "last_used_at" timestamptz not null, "expires_at" timestamptz not null, "revoked_at" timestamptz null, "revoke_reason" varchar(64) null, "user_agent" varchar(512) not null, "client_address" varchar(64) not null, primary key ("id"));`,
    );
    this.addSql(`create index "sessions_user_id_index" on "sessions" ("user_id");`);

    this.addSql(
      `create table "refresh_tokens" ("id" uuid not null, "session_id" uuid not null, "token_hash" varchar(64) not null, "created_at" timestamptz not null, "expires_at" timestamptz not null, "rotated_at" timestamptz null, "rotation_reply" text null, primary key ("id"));`,
    );
    this.addSql(`create index "refresh_tokens_session_id_index" on "refresh_tokens" ("session_id");`);
    this.addSql(`alter table "refresh_tokens" add constraint "refresh_tokens_token_hash_unique" unique ("token_hash");`);

    this.addSql(
      `create table "api_keys" ("id" uuid not null, "user_id" uuid not null, "name" varchar(100) not null, "prefix" varchar(16) not null, "secret_hash" varchar(64) not null, "created_at" timestamptz not null, "expires_at" timestamptz null, "last_used_at" timestamptz null, "revoked_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "api_keys_user_id_index" on "api_keys" ("user_id");`);
    this.addSql(`alter table "api_keys" add constraint "api_keys_secret_hash_unique" unique ("secret_hash");`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_outcome_check" check ("outcome" in ('success', 'failure'));`);

    this.addSql(`alter table "users" add constraint "users_role_check" check ("role" in ('user', 'admin', 'worker'));`);

    this.addSql(
      `alter table "sessions" add constraint "sessions_user_id_foreign" foreign key ("user_id") references "users" ("id") on delete cascade;`,
    );

    this.addSql(
      `alter table "refresh_tokens" add constraint "refresh_tokens_session_id_foreign" foreign key ("session_id") references "sessions" ("id") on delete cascade;`,
    );

    this.addSql(
      `alter table "api_keys" add constraint "api_keys_user_id_foreign" foreign key ("user_id") references "users" ("id") on delete cascade;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "sessions" drop constraint "sessions_user_id_foreign";`);
    this.addSql(`alter table "api_keys" drop constraint "api_keys_user_id_foreign";`);
    this.addSql(`alter table "refresh_tokens" drop constraint "refresh_tokens_session_id_foreign";`);

    this.addSql(`drop table if exists "audit_events" cascade;`);
    this.addSql(`drop table if exists "rate_limit_counters" cascade;`);
    this.addSql(`drop table if exists "settings" cascade;`);
    this.addSql(`drop table if exists "signing_keys" cascade;`);
    this.addSql(`drop table if exists "users" cascade;`);
    this.addSql(`drop table if exists "sessions" cascade;`);
    this.addSql(`drop table if exists "refresh_tokens" cascade;`);
    this.addSql(`drop table if exists "api_keys" cascade;`);
  }
}
