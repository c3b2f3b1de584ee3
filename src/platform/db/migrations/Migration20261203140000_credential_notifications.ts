import { Migration } from '@mikro-orm/migrations';

/**
 * Every change that can end or alter a credential (a session or an API key revoked,
 * shortened or deleted; an account deactivated, renamed, given another role or deleted)
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
    // Row triggers, to see what changed (a refresh extends a session: that ends nothing);
    // the notifications of one transaction are one, since PostgreSQL folds identical ones.
    this.addSql(
      `create trigger "sessions_credentials_changed" after update on "sessions" for each row when (old.revoked_at is distinct from new.revoked_at or new.expires_at < old.expires_at or old.user_id <> new.user_id) execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "sessions_credentials_deleted" after delete on "sessions" for each row execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "api_keys_credentials_changed" after update on "api_keys" for each row when (old.revoked_at is distinct from new.revoked_at or old.expires_at is distinct from new.expires_at or old.user_id <> new.user_id or old.secret_hash <> new.secret_hash) execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "api_keys_credentials_deleted" after delete on "api_keys" for each row execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "users_credentials_changed" after update on "users" for each row when (old.active <> new.active or old.role <> new.role or old.username <> new.username) execute function "notify_credentials_changed"();`,
    );
    this.addSql(
      `create trigger "users_credentials_deleted" after delete on "users" for each row execute function "notify_credentials_changed"();`,
    );
  }

  override down(): void | Promise<void> {
    for (const table of ['users', 'api_keys', 'sessions']) {
      this.addSql(`drop trigger if exists "${table}_credentials_changed" on "${table}";`);
      this.addSql(`drop trigger if exists "${table}_credentials_deleted" on "${table}";`);
    }
    this.addSql(`drop function if exists "notify_credentials_changed"();`);
  }
}
