import { createHash } from 'node:crypto';
import { normalizeUsername } from './accounts.ts';
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { authSettings } from './auth-settings.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';
import { resourceExhausted } from '../platform/domain-errors.ts';
import { authReasons } from './auth-reasons.ts';

const tableName = 'rate_limit_counters';
const minute = 60;
const day = 86_400;
/** The first account-wide delay; each further failure doubles it up to auth.account_throttle_max_delay. */
const firstThrottleDelayMs = 1000;
/** An address the account signed in from this recently is its owner's, as far as the account-wide throttle goes. */
const knownAddressDays = 30;

const prefixes = {
  addressRequests: 'ym-addr-calls',
  addressFailures: 'ym-addr-fail',
  pairFailures: 'ym-pair-fail',
  accountFailures: 'ym-acct-fail',
  accountThrottle: 'ym-acct-throttle',
} as const;

interface Limiters {
  addressRequests: RateLimiterPostgres;
  addressFailures: RateLimiterPostgres;
  /** Failures on one account from one client address. */
  pairFailures: RateLimiterPostgres;
  /** Consecutive failures on one account from anywhere, over a day; never refuses by itself. */
  accountFailures: RateLimiterPostgres;
  /** One attempt per delay on a throttled account; each attempt sets the delay it opens. */
  accountThrottle: RateLimiterPostgres;
}

/** How a reserved attempt ended. */
export type AttemptOutcome =
  /** The credentials were right: the account's failure counts start again. */
  | 'success'
  /** A guess that failed: the reserved slots stay taken. */
  | 'failure'
  /** Refused before any credential was checked (a missing field): the slots are given back. */
  | 'not_evaluated';

/** The slots one attempt holds, taken before its credentials are checked. */
export interface AttemptReservation {
  /**
   * Settles the attempt. Returns true when this failure brought the account to
   * auth.account_throttle_threshold (from now on, attempts on it are slowed down).
   */
  settle(outcome: AttemptOutcome): Promise<{ accountThrottled: boolean }>;
}

/**
 * Limits on credential-checking calls (Login, Register, Refresh, ChangePassword), counted
 * in PostgreSQL so that every instance sees the same counts. Every attempt takes its slots
 * atomically before its credentials are checked (one upsert per counter), so guesses sent
 * at once cannot all slip in under a limit that is only checked first and counted later:
 * - every call per client address (a generous ceiling);
 * - failures per client address;
 * - failures per account and client address: one address that keeps guessing is refused
 *   for that account, while the owner signing in from elsewhere is not;
 * - failures per account from anywhere: past a threshold, each further attempt on the
 *   account waits a delay that doubles with each failure, up to a cap; addresses the
 *   account recently signed in from skip that wait. This slows a distributed guesser down
 *   without letting anyone lock the account for long.
 * Limits come from runtime settings and follow their changes.
 */
export class CredentialRateLimiter {
  readonly #pool: pg.Pool;
  readonly #settings: SettingsReader<typeof authSettings>;
  #limiters: Limiters;

  constructor(pool: pg.Pool, settings: SettingsReader<typeof authSettings>) {
    this.#pool = pool;
    this.#settings = settings;
    this.#limiters = this.#build();
    for (const key of [
      'auth.account_failure_limit',
      'auth.account_failure_window',
      'auth.address_failure_limit',
      'auth.address_request_limit',
    ] as const) {
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

  /**
   * Takes the slots of one attempt, or throws ResourceExhausted (with the time to wait)
   * and takes none. `account` is an accountKeyOf key; only attempts that check the
   * account's password count toward (and wait for) the account-wide throttle.
   */
  async reserve(
    address: string,
    account: string | undefined,
    { checksPassword }: { checksPassword: boolean },
  ): Promise<AttemptReservation> {
    const limiters = this.#limiters;
    const held: Array<{ limiter: RateLimiterPostgres; key: string }> = [];
    const giveBack = () => Promise.all(held.map(({ limiter, key }) => limiter.reward(key, 1)));
    const take = async (limiter: RateLimiterPostgres, key: string, what: string, durationSeconds?: number) => {
      try {
        const taken = await limiter.consume(key, 1, durationSeconds === undefined ? {} : { customDuration: durationSeconds });
        held.push({ limiter, key });
        return taken;
      } catch (rejection) {
        await giveBack();
        throw rejection instanceof RateLimiterRes ? tooMany(what, rejection.msBeforeNext) : rejection;
      }
    };

    const addressKey = address.slice(0, 64);
    try {
      await limiters.addressRequests.consume(addressKey);
    } catch (rejection) {
      throw rejection instanceof RateLimiterRes ? tooMany('too many calls from this address', rejection.msBeforeNext) : rejection;
    }
    await take(limiters.addressFailures, addressKey, 'too many failed attempts from this address');
    let accountFailures = 0;
    if (account !== undefined) {
      await take(limiters.pairFailures, pairKey(account, addressKey), 'too many failed attempts for this account from this address');
    }
    if (account !== undefined && checksPassword) {
      accountFailures = (await take(limiters.accountFailures, account, 'too many failed attempts for this account')).consumedPoints;
      const threshold = this.#settings.get('auth.account_throttle_threshold');
      if (accountFailures > threshold && !(await this.#signedInFrom(account, addressKey))) {
        // One attempt per delay, the delay set by the attempt that opens it: whoever comes
        // first after it passes gets in, the others are refused until the next one passes.
        const delayMs = Math.min(
          firstThrottleDelayMs * 2 ** Math.min(accountFailures - threshold - 1, 30),
          this.#settings.get('auth.account_throttle_max_delay'),
        );
        // The failure count taken above is not a failure of this attempt if it may not go ahead.
        await take(limiters.accountThrottle, account, 'too many failed attempts for this account', Math.max(1, Math.ceil(delayMs / 1000)));
      }
    }

    const reachedThreshold = accountFailures === this.#settings.get('auth.account_throttle_threshold');
    return {
      settle: async (outcome) => {
        if (outcome === 'failure') return { accountThrottled: reachedThreshold };
        if (outcome === 'not_evaluated') {
          await giveBack();
          return { accountThrottled: false };
        }
        await limiters.addressFailures.reward(addressKey, 1);
        if (account !== undefined) await this.#forget(account, [pairKey(account, addressKey)]);
        return { accountThrottled: false };
      },
    };
  }

  /**
   * Forgets every failure count and delay of an account (an admin's ClearSignInThrottle).
   * Returns how many counters there were.
   */
  async clearAccount(userId: string): Promise<number> {
    const account = this.accountKeyOfUser(userId);
    const { rowCount } = await this.#pool.query(`delete from ${tableName} where key = any($1) or key like $2`, [
      [`${prefixes.accountFailures}:${account}`, `${prefixes.accountThrottle}:${account}`],
      `${prefixes.pairFailures}:${escapeLike(account)}|%`,
    ]);
    return rowCount ?? 0;
  }

  /** Deletes expired counters (the store does not expire rows by itself). */
  async pruneExpired(): Promise<number> {
    const result = await this.#pool.query(`delete from ${tableName} where expire < $1`, [Date.now()]);
    return result.rowCount ?? 0;
  }

  /** After a success: the account's consecutive failures end, and so do this address's. */
  async #forget(account: string, pairKeys: string[]): Promise<void> {
    await this.#pool.query(`delete from ${tableName} where key = any($1)`, [
      [
        `${prefixes.accountFailures}:${account}`,
        `${prefixes.accountThrottle}:${account}`,
        ...pairKeys.map((key) => `${prefixes.pairFailures}:${key}`),
      ],
    ]);
  }

  async #signedInFrom(account: string, address: string): Promise<boolean> {
    if (!account.startsWith('id:')) return false;
    const { rows } = await this.#pool.query<{ known: boolean }>(
      `select exists(select 1 from sessions where user_id = $1 and client_address = $2 and last_used_at > now() - make_interval(days => $3)) as known`,
      [account.slice('id:'.length), address, knownAddressDays],
    );
    return rows[0]?.known ?? false;
  }

  #make(keyPrefix: string, points: number, duration: number): RateLimiterPostgres {
    return new RateLimiterPostgres({
      storeClient: this.#pool,
      storeType: 'pool',
      tableName,
      tableCreated: true,
      // Expired counters are pruned by the housekeeping task (pruneExpired), not by a timer per limiter.
      clearExpiredByTimeout: false,
      keyPrefix,
      points,
      duration,
    });
  }

  #build(): Limiters {
    return {
      addressRequests: this.#make(prefixes.addressRequests, this.#settings.get('auth.address_request_limit'), minute),
      addressFailures: this.#make(prefixes.addressFailures, this.#settings.get('auth.address_failure_limit'), minute),
      pairFailures: this.#make(
        prefixes.pairFailures,
        this.#settings.get('auth.account_failure_limit'),
        Math.ceil(this.#settings.get('auth.account_failure_window') / 1000),
      ),
      accountFailures: this.#make(prefixes.accountFailures, 1_000_000, day),
      accountThrottle: this.#make(prefixes.accountThrottle, 1, 1),
    };
  }
}

function pairKey(account: string, address: string): string {
  return `${account}|${address}`;
}

function tooMany(what: string, retryAfterMs: number) {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return resourceExhausted(`${what}: try again in ${seconds} s`, retryAfterMs, authReasons.RATE_LIMITED);
}
