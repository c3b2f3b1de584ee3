/**
 * Sign-in rate limiting: per address, per account, throttling and its audit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { AuditOutcome } from '../../gen/yardmaster/v1/admin_pb.ts';
import { expectConnectError, retryDelayMs, uniqueName } from '../support/assertions.ts';
import { startTestServer } from '../support/test-server.ts';
import { method, server, admin, setSetting, freshAddress, authFrom, userCount, useAuthServer } from './support.ts';

useAuthServer();

describe('rate limiting', () => {
  /** Failure counters of an account in rate_limit_counters (keyed by the account's id). */
  const accountCounterPoints = (userId: string) =>
    server.countRows(`select coalesce(sum(points), 0)::int as n from rate_limit_counters where key like '%' || $1 || '%'`, [
      `id:${userId}`,
    ]);

  /** Settles `calls` together; counts the replies by Connect code name (`ok` for a success). */
  async function outcomesOf(calls: Array<Promise<unknown>>): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const settled of await Promise.allSettled(calls)) {
      if (settled.status === 'rejected' && !(settled.reason instanceof ConnectError)) throw settled.reason;
      const key = settled.status === 'fulfilled' ? 'ok' : Code[(settled.reason as ConnectError).code]!;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  test('Login: guesses sent at once are evaluated at most auth.account_failure_limit times, the rest are ResourceExhausted', async () => {
    await setSetting('auth.account_failure_limit', 5);
    const { user, password } = await server.createUser();
    const auth = authFrom(freshAddress());
    const outcomes = await outcomesOf(
      Array.from({ length: 24 }, (_, i) => auth.login({ username: user.username, password: `wrong-guess-${i}` })),
    );
    expect(outcomes).toEqual({ Unauthenticated: 5, ResourceExhausted: 19 });
    // Only the evaluated guesses were failures that reached the password check.
    expect(
      await server.countRows(
        `select count(*)::int as n from audit_events where action = $1 and target = $2 and reason = 'INVALID_CREDENTIALS'`,
        [method('AuthService', 'Login'), user.username],
      ),
    ).toBe(5);
    // The owner, elsewhere, is not affected.
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
  });

  test('Login: guesses sent at once to two instances share one count', async () => {
    await setSetting('auth.account_failure_limit', 5);
    const { user } = await server.createUser();
    const other = await startTestServer({
      env: { TRUST_PROXY: '1' },
      database: { url: server.databaseUrl, name: '', drop: async () => {} },
    });
    try {
      const address = freshAddress();
      const here = authFrom(address);
      const there = other.authClient({ 'x-forwarded-for': address });
      const outcomes = await outcomesOf(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? here : there).login({ username: user.username, password: `wrong-guess-${i}` })),
      );
      expect(outcomes).toEqual({ Unauthenticated: 5, ResourceExhausted: 15 });
    } finally {
      await other.close();
    }
  });

  test('Login: guesses at many accounts sent at once from one address are evaluated at most auth.address_failure_limit times', async () => {
    await setSetting('auth.address_failure_limit', 8);
    const auth = authFrom(freshAddress());
    const outcomes = await outcomesOf(
      Array.from({ length: 20 }, () => auth.login({ username: uniqueName('nobody'), password: 'not-the-password' })),
    );
    expect(outcomes).toEqual({ Unauthenticated: 8, ResourceExhausted: 12 });
  });

  test('ChangePassword: wrong current passwords sent at once are evaluated at most auth.account_failure_limit times, and nothing changes', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const user = await server.createUser();
    const outcomes = await outcomesOf(
      Array.from({ length: 12 }, (_, i) =>
        user.client.auth.changePassword({ currentPassword: `a-wrong-guess-${i}`, newPassword: 'a-new-password-123' }),
      ),
    );
    expect(outcomes).toEqual({ InvalidArgument: 3, ResourceExhausted: 9 });
    const limited = await expectConnectError(
      user.client.auth.changePassword({ currentPassword: user.password, newPassword: 'a-new-password-123' }),
      Code.ResourceExhausted,
      'RATE_LIMITED',
    );
    expect(retryDelayMs(limited)).toBeGreaterThan(0);
    // Nothing changed: the old password still signs in, from another address.
    expect((await authFrom(freshAddress()).login({ username: user.user.username, password: user.password })).user?.id).toBe(user.user.id);
  });

  test('Register: attempts on a taken name sent at once are evaluated at most auth.account_failure_limit times', async () => {
    await setSetting('auth.open_registration', true);
    await setSetting('auth.account_failure_limit', 4);
    const { user } = await server.createUser();
    const auth = authFrom(freshAddress());
    const usersBefore = await userCount();
    const outcomes = await outcomesOf(
      Array.from({ length: 15 }, (_, i) =>
        auth.register({ username: user.username, email: `${uniqueName('taken')}-${i}@example.com`, password: 'a-long-enough-password' }),
      ),
    );
    expect(outcomes).toEqual({ AlreadyExists: 4, ResourceExhausted: 11 });
    expect(await userCount()).toBe(usersBefore);
  });

  test('a guesser at one address cannot lock the owner out from another address', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const { user, password } = await server.createUser();
    const attacker = authFrom(freshAddress());
    for (let attempt = 0; attempt < 3; attempt++) {
      await expectConnectError(
        attacker.login({ username: user.username, password: 'not-the-password' }),
        Code.Unauthenticated,
        'INVALID_CREDENTIALS',
      );
    }
    // The guesser is refused, even with the right password, with RetryInfo and retry-after...
    const refused = await expectConnectError(attacker.login({ username: user.username, password }), Code.ResourceExhausted, 'RATE_LIMITED');
    const delay = retryDelayMs(refused);
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThanOrEqual(15 * 60_000);
    expect(Number(refused.metadata.get('retry-after'))).toBe(Math.max(1, Math.ceil(delay / 1000)));
    // ... while the owner, from elsewhere, signs in at once.
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
    expect((await authFrom(freshAddress()).login({ username: user.email, password })).user?.id).toBe(user.id);
  });

  test('past auth.account_throttle_threshold, attempts on the account from anywhere wait a delay that doubles up to auth.account_throttle_max_delay; the throttling is audited once', async () => {
    await setSetting('auth.account_throttle_threshold', 3);
    await setSetting('auth.account_throttle_max_delay', '2s');
    const { user, password } = await server.createUser();
    const ownerAddress = freshAddress();
    await authFrom(ownerAddress).login({ username: user.username, password });
    // A guesser with a fresh address for every guess.
    const guess = () => authFrom(freshAddress()).login({ username: user.username, password: 'not-the-password' });
    for (let attempt = 0; attempt < 3; attempt++) await expectConnectError(guess(), Code.Unauthenticated, 'INVALID_CREDENTIALS');

    const waits: number[] = [];
    for (let round = 0; round < 4; round++) {
      // One attempt goes ahead and opens the next delay; the next one must wait it out.
      await expectConnectError(guess(), Code.Unauthenticated, 'INVALID_CREDENTIALS');
      const throttled = await expectConnectError(guess(), Code.ResourceExhausted, 'RATE_LIMITED');
      waits.push(retryDelayMs(throttled));
      await sleep(retryDelayMs(throttled) + 50);
    }
    expect(waits[0]).toBeLessThanOrEqual(1000);
    expect(waits[1]).toBeGreaterThan(1000);
    expect(waits[1]).toBeLessThanOrEqual(2000);
    expect(waits[2]).toBeGreaterThan(1000);
    expect(waits[3]).toBeLessThanOrEqual(2000); // capped
    // The right password from a new address waits too: the throttle is on the account...
    await expectConnectError(guess(), Code.Unauthenticated);
    await expectConnectError(authFrom(freshAddress()).login({ username: user.username, password }), Code.ResourceExhausted, 'RATE_LIMITED');
    // ... but not from where the owner signed in before; and that success ends the throttling.
    expect((await authFrom(ownerAddress).login({ username: user.username, password })).user?.id).toBe(user.id);
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
    const { auditEvents } = await admin.admin.listAuditEvents({ action: method('AuthService', 'AccountThrottled'), target: user.id });
    expect(auditEvents).toHaveLength(1);
    expect(auditEvents[0]!.reason).toBe('ACCOUNT_THROTTLED');
  });

  test('refused registrations of an account’s name, from many addresses, do not slow its sign-ins down', async () => {
    await setSetting('auth.account_throttle_threshold', 2);
    const { user, password } = await server.createUser();
    for (let attempt = 0; attempt < 6; attempt++) {
      await expectConnectError(
        authFrom(freshAddress()).register({
          username: user.username,
          email: `${uniqueName('squat')}@example.com`,
          password: 'a-long-enough-password',
        }),
        Code.PermissionDenied,
        'REGISTRATION_CLOSED',
      );
    }
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
  });

  test('failures by username and by e-mail count against the same account', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const { user, password } = await server.createUser();
    const auth = authFrom(freshAddress());
    await expectConnectError(auth.login({ username: user.username, password: 'wrong-1' }), Code.Unauthenticated);
    await expectConnectError(auth.login({ username: user.email, password: 'wrong-2' }), Code.Unauthenticated);
    await expectConnectError(auth.login({ username: user.email.toUpperCase(), password: 'wrong-3' }), Code.Unauthenticated);

    await expectConnectError(auth.login({ username: user.username, password }), Code.ResourceExhausted);
    await expectConnectError(auth.login({ username: user.email, password }), Code.ResourceExhausted);
  });

  test('an admin’s ClearSignInThrottle lifts every refusal and delay of the account at once, and is audited; a user may not call it', async () => {
    await setSetting('auth.account_failure_limit', 2);
    await setSetting('auth.account_throttle_threshold', 3);
    const { user, password } = await server.createUser();
    const attacker = authFrom(freshAddress());
    for (let attempt = 0; attempt < 2; attempt++)
      await expectConnectError(attacker.login({ username: user.username, password: 'wrong' }), Code.Unauthenticated);
    // The fourth failure opens a delay of 1 s on the account.
    for (let attempt = 0; attempt < 2; attempt++)
      await expectConnectError(authFrom(freshAddress()).login({ username: user.username, password: 'wrong' }), Code.Unauthenticated);
    await expectConnectError(attacker.login({ username: user.username, password }), Code.ResourceExhausted);
    await expectConnectError(authFrom(freshAddress()).login({ username: user.username, password }), Code.ResourceExhausted);

    const other = await server.createUser();
    await expectConnectError(other.client.admin.clearSignInThrottle({ id: user.id }), Code.PermissionDenied, 'ROLE_NOT_ALLOWED');
    await expectConnectError(admin.admin.clearSignInThrottle({ id: 'not-a-uuid' }), Code.InvalidArgument);
    await expectConnectError(admin.admin.clearSignInThrottle({ id: '01900000-0000-7000-8000-000000000000' }), Code.NotFound);

    const cleared = await admin.admin.clearSignInThrottle({ id: user.id });
    expect(cleared.wasThrottled).toBe(true);
    expect(cleared.user?.id).toBe(user.id);
    expect(await server.countRows(`select count(*)::int as n from rate_limit_counters where key like '%id:' || $1 || '%'`, [user.id])).toBe(
      0,
    );
    expect((await attacker.login({ username: user.username, password })).user?.id).toBe(user.id);
    expect((await admin.admin.clearSignInThrottle({ id: user.id })).wasThrottled).toBe(false);
    const { auditEvents } = await admin.admin.listAuditEvents({
      action: method('AdminService', 'ClearSignInThrottle'),
      target: user.id,
      outcome: AuditOutcome.SUCCESS,
    });
    expect(auditEvents.map((event) => event.actorUsername)).toEqual(['admin', 'admin']);
    const { auditEvents: refused } = await admin.admin.listAuditEvents({
      action: method('AdminService', 'ClearSignInThrottle'),
      actor: other.user.id,
    });
    expect(refused.map((event) => event.reason)).toEqual(['ROLE_NOT_ALLOWED']);
  });

  test('failures from one address across different accounts hit auth.address_failure_limit', async () => {
    const { user, password } = await server.createUser();
    await setSetting('auth.address_failure_limit', 5);
    const address = freshAddress();
    const auth = authFrom(address);
    for (let attempt = 0; attempt < 5; attempt++) {
      await expectConnectError(auth.login({ username: uniqueName('guess'), password: 'not-the-password' }), Code.Unauthenticated);
    }

    const blocked = await expectConnectError(auth.login({ username: user.username, password }), Code.ResourceExhausted);
    const delay = retryDelayMs(blocked);
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThanOrEqual(60_000);
    expect(Number(blocked.metadata.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await expectConnectError(auth.refresh({ refreshToken: 'ymr_anything' }), Code.ResourceExhausted);
    const rows = await server.countRows(`select count(*)::int as n from rate_limit_counters where key like '%' || $1 and points >= 5`, [
      address,
    ]);
    expect(rows).toBeGreaterThanOrEqual(1);
    // Another address is not affected.
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
  });

  test('a successful login resets the account’s failure count', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const { user, password } = await server.createUser();
    const auth = authFrom(freshAddress());
    for (let round = 0; round < 3; round++) {
      for (let attempt = 0; attempt < 2; attempt++) {
        await expectConnectError(auth.login({ username: user.username, password: 'not-the-password' }), Code.Unauthenticated);
      }
      expect(await accountCounterPoints(user.id)).toBe(4); // the account's count and this address's
      expect((await auth.login({ username: user.username, password })).user?.id).toBe(user.id);
      expect(await accountCounterPoints(user.id)).toBe(0);
    }
  });

  test('all calls from one address are capped by auth.address_request_limit', async () => {
    const { user, password } = await server.createUser();
    await setSetting('auth.address_request_limit', 3);
    const auth = authFrom(freshAddress());
    for (let attempt = 0; attempt < 3; attempt++) await auth.login({ username: user.username, password });
    const capped = await expectConnectError(auth.login({ username: user.username, password }), Code.ResourceExhausted);
    expect(retryDelayMs(capped)).toBeGreaterThan(0);
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
  });
});
