import { Migration } from '@mikro-orm/migrations';

/**
 * Every change that can end or alter a credential (a session or an API key revoked,
 * expired or deleted; an account deactivated, renamed, given another role or deleted)
 * sends NOTIFY credentials_changed when its transaction commits, whichever code made it:
 * each instance remembers the credentials it checked and forgets them on that signal.
 */
export class Migration20261203140000_credential_notifications extends Migration {
  override name = 'Migration20261203140000_credential_notifications';

  override up(): void | Promise<void> {
    this.addSql(`create function "notify_credentials_changed"() returns trigger language plpgsql as $$
begin
  perform pg_notify('credentials_changed', tg_table_name);
  return null;
end
$$;`);
    this.addSql(
      `create trigger "sessions_credentials_changed" after update of "revoked_at", "expires_at", "user_id" or delete on "sessions" for each statement execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "api_keys_credentials_changed" after update of "revoked_at", "expires_at", "user_id", "secret_hash" or delete on "api_keys" for each statement execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "users_credentials_changed" after update of "active", "role", "username" or delete on "users" for each statement execute function "notify_credentials_changed"();`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop trigger if exists "users_credentials_changed" on "users";`);
    this.addSql(`drop trigger if exists "api_keys_credentials_changed" on "api_keys";`);
    this.addSql(`drop trigger if exists "sessions_credentials_changed" on "sessions";`);
    this.addSql(`drop function if exists "notify_credentials_changed"();`);
  }
}
