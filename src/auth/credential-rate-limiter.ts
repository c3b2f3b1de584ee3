import { createHash } from 'node:crypto';
import { normalizeUsername } from './accounts.ts';
import type pg from 'pg';
import { RateLimiterPostgres, type RateLimiterRes } from 'rate-limiter-flexible';
import type { SettingsStore } from '../admin/settings-store.ts';
import { resourceExhausted } from '../domain-errors.ts';

const tableName = 'rate_limit_counters';
const minute = 60;
const day = 86_400;

interface Limiters {
  addressRequests: RateLimiterPostgres;
  addressFailures: RateLimiterPostgres;
  accountFailures: RateLimiterPostgres;
  /** Holds an account's lock-out (via `block`) and counts lock-outs per day to grow the next one. */
  accountLockouts: RateLimiterPostgres;
}

/**
 * Limits on credential-checking calls (Login, Register, Refresh), counted in Postgres so
 * that every instance sees the same counts:
 * - every call per client address (a generous ceiling);
 * - failures per client address;
 * - failures per account, which lock the account for a time that doubles with each
 *   lock-out in a day, up to a maximum.
 * Limits come from runtime settings and follow their changes.
 */
export class CredentialRateLimiter {
  readonly #pool: pg.Pool;
  readonly #settings: SettingsStore;
  #limiters: Limiters;

  constructor(pool: pg.Pool, settings: SettingsStore) {
    this.#pool = pool;
    this.#settings = settings;
    this.#limiters = this.#build();
    for (const key of ['auth.account_failure_limit', 'auth.account_failure_window', 'auth.address_failure_limit', 'auth.address_request_limit'] as const) {
      settings.onChange(key, () => (this.#limiters = this.#build()));
    }
  }

  /**
   * The key failures of `accountName` count against: the account's id when the name
   * (username or e-mail, any case) belongs to one, so that every spelling of one
   * account shares its counters; otherwise the name itself.
   */
  async accountKeyOf(accountName: string): Promise<string> {
    // Usernames and e-mails are stored normalised the same way.
    const normalized = normalizeUsername(accountName);
    const { rows } = await this.#pool.query<{ id: string }>('select id from users where username = $1 or email = $1 limit 1', [normalized]);
    if (rows[0]) return this.accountKeyOfUser(rows[0].id);
    return normalized.length <= 128 ? `name:${normalized}` : `name:${createHash('sha256').update(normalized).digest('hex')}`;
  }

  /** The key of a signed-in account: the same one its names resolve to. */
  accountKeyOfUser(userId: string): string {
    return `id:${userId}`;
  }

  /** Throws ResourceExhausted (with the time to wait) when the call may not go ahead. `account` is an accountKeyOf key. */
  async admit(address: string, account: string | undefined): Promise<void> {
    const { addressRequests, addressFailures, accountFailures, accountLockouts } = this.#limiters;
    try {
      await addressRequests.consume(addressKey(address));
    } catch (rejection) {
      throw tooMany('too many calls from this address', rejected(rejection));
    }
    const addressFailureCount = await addressFailures.get(addressKey(address));
    if (addressFailureCount && addressFailureCount.consumedPoints >= addressFailures.points) {
      throw tooMany('too many failed attempts from this address', addressFailureCount.msBeforeNext);
    }
    if (account === undefined) return;
    const lockout = await accountLockouts.get(account);
    if (lockout && lockout.consumedPoints > accountLockouts.points) {
      throw tooMany('too many failed attempts for this account', lockout.msBeforeNext);
    }
    const accountFailureCount = await accountFailures.get(account);
    if (accountFailureCount && accountFailureCount.consumedPoints >= accountFailures.points) {
      throw tooMany('too many failed attempts for this account', accountFailureCount.msBeforeNext);
    }
  }

  async recordFailure(address: string, account: string | undefined): Promise<void> {
    const { addressFailures, accountFailures, accountLockouts } = this.#limiters;
    await addressFailures.penalty(addressKey(address));
    if (account === undefined) return;
    const failures = await accountFailures.penalty(account);
    if (failures.consumedPoints < accountFailures.points) return;
    // Over the limit: lock the account, twice as long as the previous lock-out of the day.
    const lockouts = await accountLockouts.penalty(lockoutCountKey(account));
    const windowMs = this.#settings.get('auth.account_failure_window');
    const lockMs = Math.min(windowMs * 2 ** (lockouts.consumedPoints - 1), this.#settings.get('auth.account_lockout_max'));
    await accountLockouts.block(account, Math.ceil(lockMs / 1000));
    await accountFailures.delete(account);
  }

  async recordSuccess(account: string | undefined): Promise<void> {
    if (account !== undefined) await this.#limiters.accountFailures.delete(account);
  }

  /** Deletes expired counters (the store does not expire rows by itself). */
  async pruneExpired(): Promise<number> {
    const result = await this.#pool.query(`delete from ${tableName} where expire < $1`, [Date.now()]);
    return result.rowCount ?? 0;
  }

  #build(): Limiters {
    const make = (keyPrefix: string, points: number, duration: number) =>
      new RateLimiterPostgres({ storeClient: this.#pool, storeType: 'pool', tableName, tableCreated: true, keyPrefix, points, duration });
    return {
      addressRequests: make('ym-addr-calls', this.#settings.get('auth.address_request_limit'), minute),
      addressFailures: make('ym-addr-fail', this.#settings.get('auth.address_failure_limit'), minute),
      accountFailures: make('ym-acct-fail', this.#settings.get('auth.account_failure_limit'), Math.ceil(this.#settings.get('auth.account_failure_window') / 1000)),
      accountLockouts: make('ym-acct-lock', 1_000_000, day),
    };
  }
}

function addressKey(address: string): string {
  return address.slice(0, 64);
}

function lockoutCountKey(account: string): string {
  return `count:${account}`;
}

function rejected(rejection: unknown): number {
  if (rejection instanceof Error) throw rejection;
  return (rejection as RateLimiterRes).msBeforeNext;
}

function tooMany(what: string, retryAfterMs: number) {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return resourceExhausted(`${what}: try again in ${seconds} s`, retryAfterMs, 'RATE_LIMITED');
}
