/**
 * AuthService Login, Refresh and Logout, and the client's auth interceptor.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, test } from 'vitest';
import type { SessionTokens } from '../../clients/ts/src/node.ts';
import { AuditOutcome } from '../../gen/yardmaster/v1/admin_pb.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { expectConnectError, reasonOf, uniqueName, violatedFields } from '../support/assertions.ts';
import type { TestUser } from '../support/test-server.ts';
import {
  method,
  server,
  admin,
  setSetting,
  sessionCount,
  openSessionCount,
  auditCount,
  currentSessionId,
  tokensOf,
  deactivate,
  useAuthServer,
} from './support.ts';

useAuthServer();

// ---------------------------------------------------------------------------------------

describe('Login', () => {
  test('login by username returns working tokens and the user, and records the session', async () => {
    const { user, password } = await server.createUser();
    const sessionsBefore = await sessionCount(user.id);
    const reply = await server.client().auth.login({ username: user.username, password });

    expect(reply.user?.id).toBe(user.id);
    expect(reply.user?.role).toBe(Role.USER);
    expect(reply.user?.lastLoginTime).toBeDefined();
    expect(reply.accessToken).not.toBe('');
    expect(reply.refreshToken).not.toBe('');
    const accessExpiry = timestampDate(reply.accessTokenExpireTime!).getTime();
    expect(accessExpiry).toBeGreaterThan(Date.now());
    expect(accessExpiry).toBeLessThanOrEqual(Date.now() + 15 * 60_000 + 5_000);
    expect(timestampDate(reply.refreshTokenExpireTime!).getTime()).toBeGreaterThan(accessExpiry);
    expect((await server.bearerAuthClient(reply.accessToken).getMe({})).user?.id).toBe(user.id);

    expect(await sessionCount(user.id)).toBe(sessionsBefore + 1);
    const tokens = await server.query<{ token_hash: string }>(
      'select t.token_hash from refresh_tokens t join sessions s on s.id = t.session_id where s.user_id = $1',
      [user.id],
    );
    expect(tokens.map((row) => row.token_hash)).not.toContain(reply.refreshToken);
    const [row] = await server.query<{ last_login_at: Date | null }>('select last_login_at from users where id = $1', [user.id]);
    expect(row!.last_login_at).not.toBeNull();
    const audited = await server.query<{ actor_id: string; target: string }>(
      `select actor_id, target from audit_events where action = $1 and outcome = 'success' and actor_id = $2`,
      [method('AuthService', 'Login'), user.id],
    );
    expect(audited.map((event) => event.target)).toContain(user.username);
  });

  test('login by e-mail works, and username and e-mail are case-insensitive', async () => {
    const { user, password } = await server.createUser();
    const byEmail = await server.client().auth.login({ username: user.email, password });
    expect(byEmail.user?.id).toBe(user.id);
    const byUpperUsername = await server.client().auth.login({ username: user.username.toUpperCase(), password });
    expect(byUpperUsername.user?.id).toBe(user.id);
    const byUpperEmail = await server.client().auth.login({ username: user.email.toUpperCase(), password });
    expect(byUpperEmail.user?.id).toBe(user.id);
  });

  test('a wrong password and an unknown user give the same Unauthenticated error, and start no session', async () => {
    const { user } = await server.createUser();
    const sessionsBefore = await sessionCount(user.id);
    const wrongPassword = await expectConnectError(
      server.client().auth.login({ username: user.username, password: 'not-the-password' }),
      Code.Unauthenticated,
    );
    const unknownUser = await expectConnectError(
      server.client().auth.login({ username: uniqueName('nobody'), password: 'not-the-password' }),
      Code.Unauthenticated,
    );
    const unknownEmail = await expectConnectError(
      server.client().auth.login({ username: `${uniqueName('nobody')}@example.com`, password: 'x' }),
      Code.Unauthenticated,
    );

    expect(reasonOf(wrongPassword)).toBe('INVALID_CREDENTIALS');
    for (const other of [unknownUser, unknownEmail]) {
      expect(reasonOf(other)).toBe(reasonOf(wrongPassword));
      expect(other.rawMessage).toBe(wrongPassword.rawMessage);
    }
    expect(await sessionCount(user.id)).toBe(sessionsBefore);
    expect(await auditCount(method('AuthService', 'Login'), 'failure', 'INVALID_CREDENTIALS')).toBeGreaterThanOrEqual(3);
    const audited = await server.query<Record<string, unknown>>('select * from audit_events where target = $1', [user.username]);
    expect(audited.length).toBeGreaterThan(0);
    expect(JSON.stringify(audited)).not.toContain('not-the-password');
  });

  test('an empty username and password are InvalidArgument naming both fields', async () => {
    const bothEmpty = await expectConnectError(server.client().auth.login({ username: '', password: '' }), Code.InvalidArgument);
    expect(violatedFields(bothEmpty).sort()).toEqual(['password', 'username']);
    const blankUsername = await expectConnectError(
      server.client().auth.login({ username: '   ', password: 'something' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(blankUsername)).toEqual(['username']);
    const emptyPassword = await expectConnectError(server.client().auth.login({ username: 'admin', password: '' }), Code.InvalidArgument);
    expect(violatedFields(emptyPassword)).toEqual(['password']);
  });

  test('an overlong username or password is InvalidArgument, never hashed', async () => {
    const overlong = await expectConnectError(
      server.client().auth.login({ username: `${'u'.repeat(321)}`, password: 'p'.repeat(1025) }),
      Code.InvalidArgument,
    );
    expect(violatedFields(overlong).sort()).toEqual(['password', 'username']);
  });

  test('an unknown user and a wrong password take about the same time', async () => {
    await setSetting('auth.account_failure_limit', 1000);
    await setSetting('auth.account_throttle_threshold', 1000);
    const { user } = await server.createUser();
    const auth = server.authClient();
    const timeFailedLogin = async (username: string) => {
      const started = performance.now();
      await expectConnectError(auth.login({ username, password: 'not-the-password' }), Code.Unauthenticated);
      return performance.now() - started;
    };
    await timeFailedLogin(uniqueName('warm-up'));
    const known: number[] = [];
    const unknown: number[] = [];
    for (let round = 0; round < 7; round++) {
      known.push(await timeFailedLogin(user.username));
      unknown.push(await timeFailedLogin(uniqueName('nobody')));
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const ratio = median(unknown) / median(known);
    expect(ratio, `unknown ${median(unknown).toFixed(1)} ms, known ${median(known).toFixed(1)} ms`).toBeGreaterThan(0.5);
    expect(ratio, `unknown ${median(unknown).toFixed(1)} ms, known ${median(known).toFixed(1)} ms`).toBeLessThan(2);
  });

  test('an access token is an EdDSA JWT with a kid that verifies offline against the JWKS', async () => {
    const { user, client } = await server.createUser();
    const token = client.tokens!.accessToken;
    const header = decodeProtectedHeader(token);
    expect(header.alg).toBe('EdDSA');
    expect(header.kid).toBeTruthy();
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL('/.well-known/jwks.json', server.url)));
    expect(payload.sub).toBe(user.id);
    expect(payload.exp! - payload.iat!).toBe(15 * 60);
  });

  test('a stale or malformed Authorization header does not stop a Login', async () => {
    const { user, password } = await server.createUser();
    for (const header of ['Bearer not-a-jwt', 'Bearer ym_not-a-key', 'Basic dXNlcjpwYXNz']) {
      const reply = await server.authClient({ authorization: header }).login({ username: user.username, password });
      expect(reply.user?.id, header).toBe(user.id);
    }
  });

  test('a deactivated account cannot log in, and its access token, refresh token and API keys stop at once', async () => {
    const { user, password, client } = await server.createUser();
    const { secret } = await client.auth.createApiKey({ name: 'before deactivation' });
    const grpcByKey = server.client({ apiKey: secret, protocol: 'grpc' });
    const { accessToken, refreshToken } = client.tokens!;
    expect((await server.bearerAuthClient(secret).getMe({})).user?.id).toBe(user.id);
    expect((await grpcByKey.auth.getMe({})).user?.id).toBe(user.id);
    expect((await server.bearerAuthClient(accessToken).getMe({})).user?.id).toBe(user.id);

    await deactivate(user.id);
    const sessionsBefore = await sessionCount(user.id);

    await expectConnectError(server.client().auth.login({ username: user.username, password }), Code.Unauthenticated, 'ACCOUNT_DISABLED');
    // A wrong password must not reveal that the account exists and is deactivated.
    await expectConnectError(
      server.client().auth.login({ username: user.username, password: 'not-the-password' }),
      Code.Unauthenticated,
      'INVALID_CREDENTIALS',
    );
    expect(await sessionCount(user.id)).toBe(sessionsBefore);

    await expectConnectError(server.bearerAuthClient(accessToken).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.bearerAuthClient(secret).getMe({}), Code.Unauthenticated);
    await expectConnectError(grpcByKey.auth.getMe({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().refresh({ refreshToken }), Code.Unauthenticated);
    expect(await openSessionCount(user.id)).toBe(0);
  });
});

describe('Refresh', () => {
  test('a refresh rotates: a new pair that works, and the spent token is marked rotated', async () => {
    const { user, client } = await server.createUser();
    const first = client.tokens!;
    const sessionId = await currentSessionId(client.auth);
    const reply = await server.authClient().refresh({ refreshToken: first.refreshToken });

    expect(reply.refreshToken).not.toBe(first.refreshToken);
    expect(reply.accessToken).not.toBe(first.accessToken);
    expect(reply.user?.id).toBe(user.id);
    expect(await currentSessionId(server.bearerAuthClient(reply.accessToken))).toBe(sessionId);
    const rows = await server.query<{ rotated: boolean }>(
      'select rotated_at is not null as rotated from refresh_tokens where session_id = $1 order by created_at, id',
      [sessionId],
    );
    expect(rows.map((row) => row.rotated)).toEqual([true, false]);

    const next = await server.authClient().refresh({ refreshToken: reply.refreshToken });
    expect(next.refreshToken).not.toBe(reply.refreshToken);
  });

  test('the parent token presented again within the grace interval returns the same pair and writes nothing', async () => {
    const { client } = await server.createUser();
    const parent = client.tokens!.refreshToken;
    const sessionId = await currentSessionId(client.auth);
    const first = await server.authClient().refresh({ refreshToken: parent });
    const rowsAfterFirst = await server.countRows('select count(*)::int as n from refresh_tokens where session_id = $1', [sessionId]);

    const again = await server.authClient().refresh({ refreshToken: parent });
    expect(again.accessToken).toBe(first.accessToken);
    expect(again.refreshToken).toBe(first.refreshToken);
    expect(again.accessTokenExpireTime).toEqual(first.accessTokenExpireTime);
    expect(await server.countRows('select count(*)::int as n from refresh_tokens where session_id = $1', [sessionId])).toBe(rowsAfterFirst);
    expect((await server.bearerAuthClient(again.accessToken).getMe({})).user).toBeDefined();
    const [session] = await server.query<{ revoked_at: Date | null }>('select revoked_at from sessions where id = $1', [sessionId]);
    expect(session!.revoked_at).toBeNull();
  });

  test('racing refreshes of one token all get the same new pair and the session survives', async () => {
    const { client } = await server.createUser();
    const parent = client.tokens!.refreshToken;
    const sessionId = await currentSessionId(client.auth);
    const replies = await Promise.all(Array.from({ length: 4 }, () => server.authClient().refresh({ refreshToken: parent })));
    expect(new Set(replies.map((reply) => reply.refreshToken)).size).toBe(1);
    expect(new Set(replies.map((reply) => reply.accessToken)).size).toBe(1);
    expect(await server.countRows('select count(*)::int as n from refresh_tokens where session_id = $1', [sessionId])).toBe(2);
    await server.authClient().refresh({ refreshToken: replies[0]!.refreshToken });
  });

  test('reusing a rotated token after the grace revokes the whole session, audited as REFRESH_TOKEN_REUSED', async () => {
    await setSetting('auth.refresh_reuse_grace', '0s');
    const user = await server.createUser();
    const other = (await server.signIn(user.user.username, user.password)).tokens!; // another session of the same account
    const stolen = user.client.tokens!.refreshToken;
    const sessionId = await currentSessionId(user.client.auth);
    const rotated = await server.authClient().refresh({ refreshToken: stolen });
    const auditedBefore = await auditCount(method('AuthService', 'Refresh'), 'failure', 'REFRESH_TOKEN_REUSED');
    await sleep(5); // past a zero grace, whatever the clock's resolution

    await expectConnectError(server.authClient().refresh({ refreshToken: stolen }), Code.Unauthenticated, 'REFRESH_TOKEN_REUSED');

    await expectConnectError(server.bearerAuthClient(rotated.accessToken).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().refresh({ refreshToken: rotated.refreshToken }), Code.Unauthenticated);
    const [session] = await server.query<{ revoked_at: Date | null }>('select revoked_at from sessions where id = $1', [sessionId]);
    expect(session!.revoked_at).not.toBeNull();
    expect(await auditCount(method('AuthService', 'Refresh'), 'failure', 'REFRESH_TOKEN_REUSED')).toBe(auditedBefore + 1);
    const { auditEvents } = await admin.admin.listAuditEvents({ action: method('AuthService', 'Refresh'), outcome: AuditOutcome.FAILURE });
    // Who and what: the account whose session it was, and that session.
    const reuse = auditEvents.find((event) => event.reason === 'REFRESH_TOKEN_REUSED' && event.target === sessionId);
    expect(reuse).toMatchObject({ errorCode: 'unauthenticated', actorId: user.user.id, actorUsername: user.user.username });

    // Only that session (token family) ends: the account's other session goes on.
    expect((await server.bearerAuthClient(other.accessToken).getMe({})).user?.id).toBe(user.user.id);
    await server.authClient().refresh({ refreshToken: other.refreshToken });
  });

  test('a garbage refresh token is Unauthenticated and writes no token', async () => {
    const tokensBefore = await server.countRows('select count(*)::int as n from refresh_tokens');
    for (const refreshToken of ['garbage', `ymr_${randomBytes(32).toString('base64url')}`, 'x'.repeat(5000), '']) {
      const error = await expectConnectError(server.authClient().refresh({ refreshToken }), Code.Unauthenticated);
      expect(reasonOf(error), refreshToken.slice(0, 20)).toBe('REFRESH_TOKEN_INVALID');
    }
    expect(await server.countRows('select count(*)::int as n from refresh_tokens')).toBe(tokensBefore);
  });
});

describe('client auth interceptor', () => {
  /** A client whose access token no longer works (its session ended) but whose refresh token is valid. */
  async function clientWithDeadAccessToken(user: TestUser, onTokensChange?: (tokens: SessionTokens | undefined) => void) {
    const dead = (await server.signIn(user.user.username, user.password)).tokens!;
    await server.bearerAuthClient(dead.accessToken).logout({});
    await expectConnectError(server.bearerAuthClient(dead.accessToken).getMe({}), Code.Unauthenticated);
    const live = (await server.signIn(user.user.username, user.password)).tokens!;
    const sessionId = await currentSessionId(server.bearerAuthClient(live.accessToken));
    const client = server.client({
      tokens: { accessToken: dead.accessToken, refreshToken: live.refreshToken, accessTokenExpiresAt: undefined },
      onTokensChange,
    });
    return { client, live, sessionId };
  }

  const tokenRows = (sessionId: string) =>
    server.countRows('select count(*)::int as n from refresh_tokens where session_id = $1', [sessionId]);

  test('a unary call with a dead access token refreshes once and succeeds', async () => {
    const user = await server.createUser();
    const changes: (SessionTokens | undefined)[] = [];
    const { client, live, sessionId } = await clientWithDeadAccessToken(user, (tokens) => changes.push(tokens));

    const { user: me } = await client.auth.getMe({});
    expect(me?.id).toBe(user.user.id);
    expect(client.tokens?.refreshToken).not.toBe(live.refreshToken);
    expect(changes).toHaveLength(1);
    expect(await tokenRows(sessionId)).toBe(2);
    // The new tokens are used from now on, without another refresh.
    await client.auth.getMe({});
    expect(await tokenRows(sessionId)).toBe(2);
  });

  test('concurrent calls that need a refresh share a single one', async () => {
    // Without a grace interval, a second refresh with the same token would end the session.
    await setSetting('auth.refresh_reuse_grace', '0s');
    const user = await server.createUser();
    const changes: (SessionTokens | undefined)[] = [];
    const { client, sessionId } = await clientWithDeadAccessToken(user, (tokens) => changes.push(tokens));

    const replies = await Promise.all(Array.from({ length: 8 }, () => client.auth.getMe({})));
    expect(replies.every((reply) => reply.user?.id === user.user.id)).toBe(true);
    expect(await tokenRows(sessionId)).toBe(2);
    expect(changes).toHaveLength(1);
    const [session] = await server.query<{ revoked_at: Date | null }>('select revoked_at from sessions where id = $1', [sessionId]);
    expect(session!.revoked_at).toBeNull();
  });

  test('when the refresh fails too, the call is Unauthenticated after one refresh attempt and the tokens are dropped', async () => {
    const user = await server.createUser();
    const dead = (await server.signIn(user.user.username, user.password)).tokens!;
    await server.bearerAuthClient(dead.accessToken).logout({ allSessions: false });
    const failedRefreshesBefore = await auditCount(method('AuthService', 'Refresh'), 'failure');
    const client = server.client({ tokens: tokensOf(dead) });

    await expectConnectError(client.auth.getMe({}), Code.Unauthenticated);
    expect(await auditCount(method('AuthService', 'Refresh'), 'failure')).toBe(failedRefreshesBefore + 1);
    expect(client.tokens).toBeUndefined();
  });
});

describe('Logout', () => {
  test('logout with a refresh token ends only that session, audited with the session as target', async () => {
    const user = await server.createUser();
    const a = (await server.signIn(user.user.username, user.password)).tokens!;
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    const sessionOfA = await currentSessionId(server.bearerAuthClient(a.accessToken));
    const reply = await server.bearerAuthClient(b.accessToken).logout({ refreshToken: a.refreshToken });
    expect(reply.revokedSessions).toBe(1);
    expect((await server.bearerAuthClient(b.accessToken).logout({ refreshToken: a.refreshToken })).revokedSessions).toBe(0);
    const { auditEvents } = await admin.admin.listAuditEvents({ action: method('AuthService', 'Logout'), target: sessionOfA });
    expect(auditEvents[0]).toMatchObject({ actorId: user.user.id, outcome: AuditOutcome.SUCCESS });

    await expectConnectError(server.bearerAuthClient(a.accessToken).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().refresh({ refreshToken: a.refreshToken }), Code.Unauthenticated);
    expect((await server.bearerAuthClient(b.accessToken).getMe({})).user?.id).toBe(user.user.id);
    expect((await user.client.auth.getMe({})).user?.id).toBe(user.user.id);
  });

  test('logout with all_sessions ends every session of the account and counts them', async () => {
    const user = await server.createUser(); // one session
    const a = (await server.signIn(user.user.username, user.password)).tokens!;
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    const bystander = await server.createUser();
    const open = await openSessionCount(user.user.id);
    expect(open).toBe(3);

    const reply = await server.bearerAuthClient(b.accessToken).logout({ refreshToken: a.refreshToken, allSessions: true });
    expect(reply.revokedSessions).toBe(open);
    expect(await openSessionCount(user.user.id)).toBe(0);
    for (const token of [a.accessToken, b.accessToken, user.client.tokens!.accessToken]) {
      await expectConnectError(server.bearerAuthClient(token).getMe({}), Code.Unauthenticated);
    }
    await expectConnectError(server.authClient().refresh({ refreshToken: b.refreshToken }), Code.Unauthenticated);
    expect((await bystander.client.auth.getMe({})).user?.id).toBe(bystander.user.id);
  });

  test('logout with only an access token ends the caller’s session, or all of them', async () => {
    const user = await server.createUser();
    const a = (await server.signIn(user.user.username, user.password)).tokens!;
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    expect((await server.bearerAuthClient(a.accessToken).logout({})).revokedSessions).toBe(1);
    await expectConnectError(server.bearerAuthClient(a.accessToken).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().refresh({ refreshToken: a.refreshToken }), Code.Unauthenticated);
    expect((await server.bearerAuthClient(b.accessToken).getMe({})).user?.id).toBe(user.user.id);

    expect((await server.bearerAuthClient(b.accessToken).logout({ allSessions: true })).revokedSessions).toBe(2);
    expect(await openSessionCount(user.user.id)).toBe(0);
  });

  test("logout needs a signed-in caller, even with a valid refresh token; another account's token is InvalidArgument like an unknown one; an API key needs a refresh_token or all_sessions", async () => {
    const user = await server.createUser();
    const victim = await server.createUser();
    const victimTokens = victim.client.tokens!;
    await expectConnectError(server.authClient().logout({}), Code.Unauthenticated);
    await expectConnectError(
      server.authClient().logout({ refreshToken: victimTokens.refreshToken, allSessions: true }),
      Code.Unauthenticated,
    );
    for (const refreshToken of [victimTokens.refreshToken, 'ymr_unknown', 'x'.repeat(500)]) {
      const error = await expectConnectError(user.client.auth.logout({ refreshToken }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['refresh_token']);
    }
    expect(await openSessionCount(victim.user.id)).toBe(1);
    expect(await openSessionCount(user.user.id)).toBe(1);

    const { secret } = await user.client.auth.createApiKey({ name: 'logout' });
    const error = await expectConnectError(server.bearerAuthClient(secret).logout({}), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['refresh_token']);
    expect(await openSessionCount(user.user.id)).toBe(1);
    expect((await server.bearerAuthClient(secret).logout({ allSessions: true })).revokedSessions).toBe(1);
    expect(await openSessionCount(user.user.id)).toBe(0);
  });
});
