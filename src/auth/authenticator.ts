import type { EntityManager } from '../platform/db/orm.ts';
import { unauthenticated } from '../platform/domain-errors.ts';
import type { Caller } from '../platform/caller.ts';
import type { RoleName } from './entities.ts';
import { apiKeyPrefix, secretHash } from './secrets.ts';
import type { SigningKeys } from './signing-keys.ts';
import { authReasons } from './auth-reasons.ts';
import type { CheckedCredentials } from './checked-credentials.ts';

interface CredentialRow {
  user_id: string;
  username: string;
  role: RoleName;
  active: boolean;
  credential_valid: boolean;
  /** When the session or key expires (null: an API key without expiry). */
  expires_at: Date | null;
}

/**
 * How long an API key's check is remembered at most: its last-used time is written at
 * most once a minute, by the check that finds it stale.
 */
const apiKeyRecheckMs = 60_000;

/**
 * Turns a bearer credential into the caller it belongs to. Access tokens are checked
 * offline (signature, expiry) and then against the database, so that a deactivated
 * account, a changed role or an ended session take effect at once; API keys are looked
 * up by their hash. A credential that checked out is remembered (see CheckedCredentials)
 * until it expires or anything about credentials changes on any instance.
 */
export class Authenticator {
  readonly #signingKeys: SigningKeys;
  readonly #checked: CheckedCredentials;

  constructor(signingKeys: SigningKeys, checked: CheckedCredentials) {
    this.#signingKeys = signingKeys;
    this.#checked = checked;
  }

  /** `em` is called only when the credential has to be looked up. */
  async authenticate(em: () => EntityManager, bearer: string): Promise<Caller> {
    const known = this.#checked.get(bearer);
    if (known) return known;
    const generation = this.#checked.generation;
    const { caller, recheckAtMs } = bearer.startsWith(apiKeyPrefix)
      ? await this.#byApiKey(em(), bearer)
      : await this.#byAccessToken(em(), bearer);
    this.#checked.remember(bearer, caller, recheckAtMs, generation);
    return caller;
  }

  async #byAccessToken(em: EntityManager, token: string): Promise<{ caller: Caller; recheckAtMs: number }> {
    const claims = await this.#signingKeys.verify(token);
    const [row] = await em.execute<CredentialRow[]>(
      `select u.id as user_id, u.username, u.role, u.active, s.expires_at,
              (s.revoked_at is null and s.expires_at > now()) as credential_valid
         from users u join sessions s on s.user_id = u.id and s.id = ?
        where u.id = ?`,
      [claims.sessionId, claims.userId],
    );
    if (!row?.credential_valid) throw unauthenticated('the session of this access token has ended', authReasons.SESSION_REVOKED);
    if (!row.active) throw unauthenticated('this account is deactivated', authReasons.ACCOUNT_DISABLED);
    return {
      caller: { userId: row.user_id, username: row.username, role: row.role, sessionId: claims.sessionId },
      recheckAtMs: Math.min(claims.expiresAtMs, new Date(row.expires_at!).getTime()),
    };
  }

  async #byApiKey(em: EntityManager, secret: string): Promise<{ caller: Caller; recheckAtMs: number }> {
    const [row] = await em.execute<(CredentialRow & { key_id: string; last_use_stale: boolean })[]>(
      // The last-used time is written at most once a minute, to keep reads from writing.
      `select k.id as key_id, u.id as user_id, u.username, u.role, u.active, k.expires_at,
              (k.revoked_at is null and (k.expires_at is null or k.expires_at > now())) as credential_valid,
              (k.last_used_at is null or k.last_used_at < now() - interval '1 minute') as last_use_stale
         from api_keys k join users u on u.id = k.user_id
        where k.secret_hash = ?`,
      [secretHash(secret)],
    );
    if (!row?.credential_valid) throw unauthenticated('the API key is not valid', authReasons.API_KEY_INVALID);
    if (!row.active) throw unauthenticated('this account is deactivated', authReasons.ACCOUNT_DISABLED);
    if (row.last_use_stale) {
      await em.execute('update api_keys set last_used_at = now() where id = ?', [row.key_id]);
    }
    const expiresAtMs = row.expires_at === null ? Number.POSITIVE_INFINITY : new Date(row.expires_at).getTime();
    return {
      caller: { userId: row.user_id, username: row.username, role: row.role, apiKeyId: row.key_id },
      recheckAtMs: Math.min(expiresAtMs, Date.now() + apiKeyRecheckMs),
    };
  }
}
