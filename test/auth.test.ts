/**
 * AuthService over a real server and a real PostgreSQL: every test calls the server as a
 * client would and checks the reply (code, error details) and what was or was not
 * written to the database. Nothing is mocked.
 *
 * The server trusts one proxy hop (TRUST_PROXY=1) so that the rate-limit tests can give
 * each test a client address of its own with X-Forwarded-For; calls without that header
 * come from 127.0.0.1 as usual. Every other test runs with generous per-address limits so
 * that failures elsewhere in this file never lock them out.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { toJson } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { SessionTokens, YardmasterClient } from '../clients/ts/src/node.ts';
import { AdminService, AuditOutcome } from '../gen/yardmaster/v1/admin_pb.ts';
import { AuthService, ListApiKeysResponseSchema } from '../gen/yardmaster/v1/auth_pb.ts';
import { Role } from '../gen/yardmaster/v1/common_pb.ts';
import { connectErrorOf, expectConnectError, reasonOf, retryDelayMs, uniqueName, violatedFields } from './support/assertions.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

const method = (service: 'AuthService' | 'AdminService', name: string) => `yardmaster.v1.${service}.${name}`;

let server: TestServer;
let admin: YardmasterClient;

/** Settings every test starts from; a test that changes others gets them restored after it. */
const suiteSettings: Record<string, unknown> = {
  'auth.address_failure_limit': 100_000,
  'auth.address_request_limit': 1_000_000,
};
const changedSettings = new Set<string>();

beforeAll(async () => {
  server = await startTestServer({ env: { TRUST_PROXY: '1' } });
  admin = await server.adminClient();
  for (const [key, value] of Object.entries(suiteSettings)) await server.setSetting(key, value);
});

afterEach(async () => {
  for (const key of changedSettings) await server.setSetting(key, key in suiteSettings ? suiteSettings[key] : null);
  changedSettings.clear();
});

afterAll(() => server?.close());

// ---------------------------------------------------------------------------------------
// Helpers

async function setSetting(key: string, value: unknown): Promise<void> {
  changedSettings.add(key);
  await server.setSetting(key, value);
}

let addressCounter = 0;
/** A client address no other test uses (TEST-NET-3), sent as X-Forwarded-For. */
function freshAddress(): string {
  addressCounter += 1;
  return `203.0.113.${addressCounter}`;
}

/** An AuthService client calling from `address`. */
function authFrom(address: string): Client<typeof AuthService> {
  return server.authClient({ 'x-forwarded-for': address });
}

const sessionCount = (userId: string) => server.countRows('select count(*)::int as n from sessions where user_id = $1', [userId]);
const openSessionCount = (userId: string) => server.countRows('select count(*)::int as n from sessions where user_id = $1 and revoked_at is null', [userId]);
const userCount = () => server.countRows('select count(*)::int as n from users');
const auditCount = (action: string, outcome: 'success' | 'failure', reason?: string) =>
  server.countRows(
    'select count(*)::int as n from audit_events where action = $1 and outcome = $2 and ($3::text is null or reason = $3)',
    [action, outcome, reason ?? null],
  );

/** The id of the session the client's access token belongs to. */
async function currentSessionId(auth: Client<typeof AuthService>): Promise<string> {
  const { sessions } = await auth.listSessions({});
  const current = sessions.filter((session) => session.current);
  expect(current).toHaveLength(1);
  return current[0]!.id;
}

function tokensOf(grant: { accessToken: string; refreshToken: string }): SessionTokens {
  return { accessToken: grant.accessToken, refreshToken: grant.refreshToken, accessTokenExpiresAt: undefined };
}

async function deactivate(userId: string): Promise<void> {
  await admin.admin.updateUser({ user: { id: userId, active: false }, updateMask: { paths: ['active'] } });
}


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
    const wrongPassword = await expectConnectError(server.client().auth.login({ username: user.username, password: 'not-the-password' }), Code.Unauthenticated);
    const unknownUser = await expectConnectError(server.client().auth.login({ username: uniqueName('nobody'), password: 'not-the-password' }), Code.Unauthenticated);
    const unknownEmail = await expectConnectError(server.client().auth.login({ username: `${uniqueName('nobody')}@example.com`, password: 'x' }), Code.Unauthenticated);

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
    const blankUsername = await expectConnectError(server.client().auth.login({ username: '   ', password: 'something' }), Code.InvalidArgument);
    expect(violatedFields(blankUsername)).toEqual(['username']);
    const emptyPassword = await expectConnectError(server.client().auth.login({ username: 'admin', password: '' }), Code.InvalidArgument);
    expect(violatedFields(emptyPassword)).toEqual(['password']);
  });

  test('an overlong username or password is InvalidArgument, never hashed', async () => {
    const overlong = await expectConnectError(server.client().auth.login({ username: `${'u'.repeat(321)}`, password: 'p'.repeat(1025) }), Code.InvalidArgument);
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
    await expectConnectError(server.client().auth.login({ username: user.username, password: 'not-the-password' }), Code.Unauthenticated, 'INVALID_CREDENTIALS');
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
    const client = server.client({ tokens: { accessToken: dead.accessToken, refreshToken: live.refreshToken, accessTokenExpiresAt: undefined }, onTokensChange });
    return { client, live, sessionId };
  }

  const tokenRows = (sessionId: string) => server.countRows('select count(*)::int as n from refresh_tokens where session_id = $1', [sessionId]);

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

  test('logout needs a signed-in caller, even with a valid refresh token; another account\'s token is InvalidArgument like an unknown one; an API key needs a refresh_token or all_sessions', async () => {
    const user = await server.createUser();
    const victim = await server.createUser();
    const victimTokens = victim.client.tokens!;
    await expectConnectError(server.authClient().logout({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().logout({ refreshToken: victimTokens.refreshToken, allSessions: true }), Code.Unauthenticated);
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

describe('Register', () => {
  const password = 'a-long-enough-password';

  test('is PermissionDenied (REGISTRATION_CLOSED) by default and creates nothing', async () => {
    const username = uniqueName('reg');
    const usersBefore = await userCount();
    await expectConnectError(server.client().auth.register({ username, email: `${username}@example.com`, password }), Code.PermissionDenied, 'REGISTRATION_CLOSED');
    expect(await userCount()).toBe(usersBefore);
  });

  test('with open registration it creates a ROLE_USER account, signs it in and stores only an argon2id hash', async () => {
    await setSetting('auth.open_registration', true);
    const username = uniqueName('Reg');
    const email = `${username}@Example.COM`;
    const reply = await server.client().auth.register({ username, email, password });

    expect(reply.user?.role).toBe(Role.USER);
    expect(reply.user?.username).toBe(username.toLowerCase());
    expect(reply.user?.email).toBe(email.toLowerCase());
    expect(reply.user?.active).toBe(true);
    expect(reply.accessToken).not.toBe('');
    expect(reply.refreshToken).not.toBe('');
    expect((await server.bearerAuthClient(reply.accessToken).getMe({})).user?.id).toBe(reply.user!.id);
    await server.authClient().refresh({ refreshToken: reply.refreshToken });

    const [row] = await server.query<{ role: string; password_hash: string }>('select role, password_hash from users where id = $1', [reply.user!.id]);
    expect(row!.role).toBe('user');
    expect(row!.password_hash).not.toContain(password);
    const params = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(row!.password_hash);
    expect(params, row!.password_hash.slice(0, 40)).not.toBeNull();
    expect(Number(params![1])).toBeGreaterThanOrEqual(19_456);
    expect(Number(params![2])).toBeGreaterThanOrEqual(2);
    expect(await sessionCount(reply.user!.id)).toBe(1);
    expect((await server.client().auth.login({ username: username.toUpperCase(), password })).user?.id).toBe(reply.user!.id);
  });

  test('a taken username or e-mail is AlreadyExists naming the field, and creates nothing', async () => {
    await setSetting('auth.open_registration', true);
    const { user } = await server.createUser();
    const usersBefore = await userCount();

    const sameName = await expectConnectError(
      server.client().auth.register({ username: user.username.toUpperCase(), email: `${uniqueName()}@example.com`, password }),
      Code.AlreadyExists,
    );
    expect(violatedFields(sameName)).toEqual(['username']);
    const sameEmail = await expectConnectError(
      server.client().auth.register({ username: uniqueName(), email: user.email.toUpperCase(), password }),
      Code.AlreadyExists,
    );
    expect(violatedFields(sameEmail)).toEqual(['email']);
    expect(await userCount()).toBe(usersBefore);
  });

  test('a password shorter than auth.password_min_length or over 1024 characters is InvalidArgument on password', async () => {
    await setSetting('auth.open_registration', true);
    const username = uniqueName('reg');
    const short = await expectConnectError(server.client().auth.register({ username, email: `${username}@example.com`, password: 'elevenchars' }), Code.InvalidArgument);
    expect(violatedFields(short)).toEqual(['password']);

    const overlong = await expectConnectError(server.client().auth.register({ username, email: `${username}@example.com`, password: 'p'.repeat(1025) }), Code.InvalidArgument);
    expect(violatedFields(overlong)).toEqual(['password']);

    await setSetting('auth.password_min_length', 24);
    const underRaisedMinimum = await expectConnectError(server.client().auth.register({ username, email: `${username}@example.com`, password }), Code.InvalidArgument);
    expect(violatedFields(underRaisedMinimum)).toEqual(['password']);
    expect(await server.countRows('select count(*)::int as n from users where username = $1', [username])).toBe(0);
  });

  test('a bad username and a bad e-mail are InvalidArgument naming each field', async () => {
    await setSetting('auth.open_registration', true);
    const usersBefore = await userCount();
    for (const [username, email] of [
      ['ab', 'not-an-email'],
      ['has space', 'missing-domain@'],
      ['x'.repeat(65), 'two@@example.com'],
    ] as const) {
      const error = await expectConnectError(server.client().auth.register({ username, email, password }), Code.InvalidArgument);
      expect(violatedFields(error), `${username} / ${email}`).toEqual(['username', 'email']);
    }
    const allBad = await expectConnectError(server.client().auth.register({ username: 'a!', email: 'nope', password: 'short' }), Code.InvalidArgument);
    expect(violatedFields(allBad)).toEqual(['username', 'email', 'password']);
    expect(await userCount()).toBe(usersBefore);
  });
});

describe('GetMe', () => {
  test.each([
    ['user', Role.USER],
    ['admin', Role.ADMIN],
    ['worker', Role.WORKER],
  ] as const)('returns the caller’s own account for a %s', async (_name, role) => {
    const { user, client } = await server.createUser({ role });
    const { user: me } = await client.auth.getMe({});
    expect(me?.id).toBe(user.id);
    expect(me?.username).toBe(user.username);
    expect(me?.role).toBe(role);
    expect(me?.active).toBe(true);
  });

  test('without credentials it is Unauthenticated (CREDENTIALS_REQUIRED)', async () => {
    await expectConnectError(server.authClient().getMe({}), Code.Unauthenticated, 'CREDENTIALS_REQUIRED');
    await expectConnectError(server.client({ protocol: 'grpc' }).auth.getMe({}), Code.Unauthenticated, 'CREDENTIALS_REQUIRED');
  });

  test('a malformed Authorization header, a bad token or an unknown API key is Unauthenticated', async () => {
    await expectConnectError(server.authClient({ authorization: 'Basic dXNlcjpwYXNz' }).getMe({}), Code.Unauthenticated, 'CREDENTIALS_MALFORMED');
    await expectConnectError(server.bearerAuthClient('not-a-jwt').getMe({}), Code.Unauthenticated);
    const { client } = await server.createUser();
    const [header, payload] = client.tokens!.accessToken.split('.');
    await expectConnectError(server.bearerAuthClient(`${header}.${payload}.${'A'.repeat(86)}`).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.bearerAuthClient(`ym_${randomBytes(32).toString('base64url')}`).getMe({}), Code.Unauthenticated, 'API_KEY_INVALID');
  });
});

describe('ChangePassword', () => {
  const newPassword = 'a-brand-new-password';

  test('a wrong current password is InvalidArgument on current_password and changes nothing', async () => {
    const user = await server.createUser();
    const other = (await server.signIn(user.user.username, user.password)).tokens!;
    const [before] = await server.query<{ password_hash: string }>('select password_hash from users where id = $1', [user.user.id]);
    const error = await expectConnectError(user.client.auth.changePassword({ currentPassword: 'not-the-password', newPassword }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['current_password']);

    const [after] = await server.query<{ password_hash: string }>('select password_hash from users where id = $1', [user.user.id]);
    expect(after!.password_hash).toBe(before!.password_hash);
    expect((await server.bearerAuthClient(other.accessToken).getMe({})).user?.id).toBe(user.user.id);
    await server.client().auth.login({ username: user.user.username, password: user.password });
  });

  test('an empty current password and a too-short new one are InvalidArgument naming both fields', async () => {
    const user = await server.createUser();
    const error = await expectConnectError(user.client.auth.changePassword({ currentPassword: '', newPassword: 'short' }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['current_password', 'new_password']);
    const tooShort = await expectConnectError(user.client.auth.changePassword({ currentPassword: user.password, newPassword: 'short' }), Code.InvalidArgument);
    expect(violatedFields(tooShort)).toEqual(['new_password']);
  });

  test('a change ends the caller’s other sessions but not the current one', async () => {
    const user = await server.createUser();
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    const c = (await server.signIn(user.user.username, user.password)).tokens!;
    const currentId = await currentSessionId(user.client.auth);

    const reply = await user.client.auth.changePassword({ currentPassword: user.password, newPassword });
    expect(reply.revokedSessions).toBe(2);

    expect((await user.client.auth.getMe({})).user?.id).toBe(user.user.id);
    await server.authClient().refresh({ refreshToken: user.client.tokens!.refreshToken });
    for (const other of [b, c]) {
      await expectConnectError(server.bearerAuthClient(other.accessToken).getMe({}), Code.Unauthenticated);
      await expectConnectError(server.authClient().refresh({ refreshToken: other.refreshToken }), Code.Unauthenticated);
    }
    const open = await server.query<{ id: string }>('select id from sessions where user_id = $1 and revoked_at is null', [user.user.id]);
    expect(open.map((row) => row.id)).toEqual([currentId]);
  });

  test('after a change the old password no longer logs in and the new one does', async () => {
    const user = await server.createUser();
    await user.client.auth.changePassword({ currentPassword: user.password, newPassword });
    await expectConnectError(server.client().auth.login({ username: user.user.username, password: user.password }), Code.Unauthenticated, 'INVALID_CREDENTIALS');
    expect((await server.client().auth.login({ username: user.user.username, password: newPassword })).user?.id).toBe(user.user.id);
  });
});

describe('API keys', () => {
  test('the secret starts with ym_, is shown only once and stored only as a hash', async () => {
    const { user, client } = await server.createUser();
    const { apiKey, secret } = await client.auth.createApiKey({ name: 'nightly pipeline' });
    expect(secret.startsWith('ym_')).toBe(true);
    expect(secret.length).toBeGreaterThan(30);
    expect(apiKey?.name).toBe('nightly pipeline');
    expect(apiKey?.prefix).toHaveLength(11);
    expect(secret.startsWith(apiKey!.prefix)).toBe(true);
    expect(apiKey?.lastUsedTime).toBeUndefined();
    expect(apiKey?.revokeTime).toBeUndefined();
    expect(apiKey?.expireTime).toBeUndefined();

    const listed = await client.auth.listApiKeys({ showRevoked: true });
    expect(listed.apiKeys.map((key) => key.id)).toEqual([apiKey!.id]);
    expect(JSON.stringify(toJson(ListApiKeysResponseSchema, listed))).not.toContain(secret.slice(11));

    const rows = await server.query<Record<string, unknown>>('select * from api_keys where user_id = $1', [user.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!['secret_hash']).not.toBe(secret);
    expect(JSON.stringify(rows)).not.toContain(secret.slice(11));
  });

  test('a key works as a Bearer credential over Connect and over gRPC, and its last use is recorded', async () => {
    const { user, client } = await server.createUser();
    const forConnect = await client.auth.createApiKey({ name: 'connect script' });
    const forGrpc = await client.auth.createApiKey({ name: 'grpc script' });
    const overConnect = server.client({ apiKey: forConnect.secret });
    const overGrpc = server.client({ apiKey: forGrpc.secret, protocol: 'grpc' });
    expect((await overConnect.auth.getMe({})).user?.id).toBe(user.id);
    expect((await overGrpc.auth.getMe({})).user?.id).toBe(user.id);

    const listed = (await client.auth.listApiKeys({})).apiKeys;
    expect(listed.map((key) => key.id)).toEqual([forGrpc.apiKey!.id, forConnect.apiKey!.id]);
    for (const key of listed) {
      expect(key.lastUsedTime, key.name).toBeDefined();
      expect(Math.abs(timestampDate(key.lastUsedTime!).getTime() - Date.now())).toBeLessThan(60_000);
    }
    const rows = await server.query<{ last_used_at: Date | null }>('select last_used_at from api_keys where user_id = $1', [user.id]);
    expect(rows.map((row) => row.last_used_at !== null)).toEqual([true, true]);
  });

  test('a key keeps working on every later call, not only the first', async () => {
    const { user, client } = await server.createUser();
    const { secret } = await client.auth.createApiKey({ name: 'cron job' });
    const overConnect = server.client({ apiKey: secret });
    const overGrpc = server.client({ apiKey: secret, protocol: 'grpc' });
    const outcomes: string[] = [];
    for (const call of [() => overConnect.auth.getMe({}), () => overConnect.auth.getMe({}), () => overGrpc.auth.getMe({}), () => overConnect.jobs.listJobs({})]) {
      outcomes.push(await call().then(() => 'ok', (error: unknown) => Code[ConnectError.from(error).code]!));
    }
    expect(outcomes).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect((await overConnect.auth.getMe({})).user?.id).toBe(user.id);
  });

  test('credential management needs a session: an API key cannot mint, list or revoke keys, change the password or touch sessions', async () => {
    const { user, client, password } = await server.createUser();
    const { apiKey, secret } = await client.auth.createApiKey({ name: 'leaked' });
    const byKey = server.bearerAuthClient(secret);
    const { sessions } = await client.auth.listSessions({});
    const keysBefore = await server.countRows('select count(*)::int as n from api_keys where user_id = $1', [user.id]);
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['CreateApiKey', () => byKey.createApiKey({ name: 'successor' })],
      ['ListApiKeys', () => byKey.listApiKeys({})],
      ['RevokeApiKey', () => byKey.revokeApiKey({ id: apiKey!.id })],
      ['ChangePassword', () => byKey.changePassword({ currentPassword: password, newPassword: 'chosen-by-a-key-thief' })],
      ['ListSessions', () => byKey.listSessions({})],
      ['RevokeSession', () => byKey.revokeSession({ id: sessions[0]!.id })],
    ];
    for (const [name, call] of calls) {
      const refused = await expectConnectError(call, Code.PermissionDenied, 'SESSION_REQUIRED');
      expect(refused.rawMessage, name).toContain('access token');
    }
    // Nothing changed: no new key, the key and the session still work, the password is the same.
    expect(await server.countRows('select count(*)::int as n from api_keys where user_id = $1', [user.id])).toBe(keysBefore);
    expect((await byKey.getMe({})).user?.id).toBe(user.id);
    expect(await openSessionCount(user.id)).toBeGreaterThanOrEqual(1);
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
    // The refusals are audited where the method is.
    expect(await server.countRows(`select count(*)::int as n from audit_events where actor_id = $1 and reason = 'SESSION_REQUIRED'`, [user.id])).toBe(4);
    // The same calls with an access token work.
    expect((await client.auth.listApiKeys({})).apiKeys.length).toBe(keysBefore);
  });

  test('an expiry in the past or a bad name is InvalidArgument and creates no key', async () => {
    const { user, client } = await server.createUser();
    const past = await expectConnectError(client.auth.createApiKey({ name: 'old', expireTime: timestampFromDate(new Date(Date.now() - 60_000)) }), Code.InvalidArgument);
    expect(violatedFields(past)).toEqual(['expire_time']);
    for (const name of ['', '   ', 'n'.repeat(101)]) {
      const error = await expectConnectError(client.auth.createApiKey({ name }), Code.InvalidArgument);
      expect(violatedFields(error), JSON.stringify(name)).toEqual(['name']);
    }
    expect(await server.countRows('select count(*)::int as n from api_keys where user_id = $1', [user.id])).toBe(0);
  });

  test('a key stops working once its expiry passes', async () => {
    const { user, client } = await server.createUser();
    const expiresAt = new Date(Date.now() + 1_500);
    const { apiKey, secret } = await client.auth.createApiKey({ name: 'short-lived', expireTime: timestampFromDate(expiresAt) });
    expect(timestampDate(apiKey!.expireTime!).getTime()).toBe(expiresAt.getTime());
    expect((await server.bearerAuthClient(secret).getMe({})).user?.id).toBe(user.id);
    await sleep(expiresAt.getTime() - Date.now() + 50);
    await expectConnectError(server.bearerAuthClient(secret).getMe({}), Code.Unauthenticated, 'API_KEY_INVALID');
  });

  test('RevokeApiKey stops the key at once over Connect and gRPC, and is audited', async () => {
    const { user, client } = await server.createUser();
    const { apiKey, secret } = await client.auth.createApiKey({ name: 'to revoke' });
    const overGrpc = server.client({ apiKey: secret, protocol: 'grpc' });
    await overGrpc.auth.getMe({});

    const { apiKey: revoked } = await client.auth.revokeApiKey({ id: apiKey!.id });
    expect(revoked?.revokeTime).toBeDefined();
    await expectConnectError(server.bearerAuthClient(secret).getMe({}), Code.Unauthenticated, 'API_KEY_INVALID');
    await expectConnectError(overGrpc.auth.getMe({}), Code.Unauthenticated);
    const [row] = await server.query<{ revoked_at: Date | null }>('select revoked_at from api_keys where id = $1', [apiKey!.id]);
    expect(row!.revoked_at).not.toBeNull();
    const audited = await server.query<{ actor_id: string }>(
      `select actor_id from audit_events where action = $1 and target = $2 and outcome = 'success'`,
      [method('AuthService', 'RevokeApiKey'), apiKey!.id],
    );
    expect(audited.map((event) => event.actor_id)).toEqual([user.id]);
  });

  test('another user’s key id is NotFound (never PermissionDenied) and the key keeps working', async () => {
    const owner = await server.createUser();
    const stranger = await server.createUser();
    const { apiKey, secret } = await owner.client.auth.createApiKey({ name: 'mine' });
    await expectConnectError(stranger.client.auth.revokeApiKey({ id: apiKey!.id }), Code.NotFound);
    await expectConnectError(stranger.client.auth.revokeApiKey({ id: '0190a5f0-0000-7000-8000-000000000000' }), Code.NotFound);
    expect((await server.bearerAuthClient(secret).getMe({})).user?.id).toBe(owner.user.id);
    const [row] = await server.query<{ revoked_at: Date | null }>('select revoked_at from api_keys where id = $1', [apiKey!.id]);
    expect(row!.revoked_at).toBeNull();
    expect((await stranger.client.auth.listApiKeys({ showRevoked: true })).apiKeys).toEqual([]);
  });

  test('a key id that is not a UUID is InvalidArgument on id', async () => {
    const { client } = await server.createUser();
    for (const id of ['not-a-uuid', '', "1' or '1'='1"]) {
      const error = await expectConnectError(client.auth.revokeApiKey({ id }), Code.InvalidArgument);
      expect(violatedFields(error), JSON.stringify(id)).toEqual(['id']);
    }
  });

  test('ListApiKeys pages newest first with page_size 1, and show_revoked adds revoked keys', async () => {
    const { client } = await server.createUser();
    const ids: string[] = [];
    for (const name of ['first', 'second', 'third']) ids.push((await client.auth.createApiKey({ name })).apiKey!.id);
    await client.auth.revokeApiKey({ id: ids[1]! });

    const collect = async (showRevoked: boolean) => {
      const seen: string[] = [];
      let pageToken = '';
      for (let page = 0; page < 10; page++) {
        const reply = await client.auth.listApiKeys({ pageSize: 1, pageToken, showRevoked });
        expect(reply.apiKeys.length).toBeLessThanOrEqual(1);
        seen.push(...reply.apiKeys.map((key) => key.id));
        if (reply.nextPageToken === '') return seen;
        pageToken = reply.nextPageToken;
      }
      throw new Error('pagination did not end');
    };
    expect(await collect(false)).toEqual([ids[2], ids[0]]);
    expect(await collect(true)).toEqual([ids[2], ids[1], ids[0]]);
    const all = await client.auth.listApiKeys({ showRevoked: true });
    expect(all.apiKeys.map((key) => key.id)).toEqual([ids[2], ids[1], ids[0]]);
    expect(all.nextPageToken).toBe('');
    expect(all.apiKeys[1]!.revokeTime).toBeDefined();
  });
});

describe('sessions', () => {
  test('ListSessions marks the current session and pages with page_size 1, most recently used first', async () => {
    const user = await server.createUser();
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    const c = (await server.signIn(user.user.username, user.password)).tokens!;
    await server.bearerAuthClient(c.accessToken).logout({}); // ended sessions are not listed
    const byB = server.bearerAuthClient(b.accessToken);
    const currentB = await currentSessionId(byB);
    const currentA = await currentSessionId(user.client.auth);
    expect(currentA).not.toBe(currentB);

    const all = await byB.listSessions({});
    expect(all.sessions.map((session) => session.id).sort()).toEqual([currentA, currentB].sort());
    const lastUsed = all.sessions.map((session) => timestampDate(session.lastUsedTime!).getTime());
    expect([...lastUsed].sort((x, y) => y - x)).toEqual(lastUsed);

    const paged: string[] = [];
    let pageToken = '';
    for (let page = 0; page < 10; page++) {
      const reply = await byB.listSessions({ pageSize: 1, pageToken });
      expect(reply.sessions.length).toBeLessThanOrEqual(1);
      paged.push(...reply.sessions.map((session) => session.id));
      if (reply.nextPageToken === '') break;
      pageToken = reply.nextPageToken;
    }
    expect(paged).toEqual(all.sessions.map((session) => session.id));
  });

  test('a session records the client address and user agent of its device', async () => {
    const { user, password } = await server.createUser();
    const address = freshAddress();
    const device = server.authClient({ 'x-forwarded-for': address, 'user-agent': 'yardmaster-tests/1.0' });
    const { accessToken } = await device.login({ username: user.username, password });
    const { sessions } = await server.bearerAuthClient(accessToken).listSessions({});
    const current = sessions.find((session) => session.current);
    expect(current?.clientAddress).toBe(address);
    expect(current?.userAgent).toBe('yardmaster-tests/1.0');
  });

  test('RevokeSession of one’s own session stops its access and refresh tokens at once', async () => {
    const user = await server.createUser();
    const b = (await server.signIn(user.user.username, user.password)).tokens!;
    const sessionB = await currentSessionId(server.bearerAuthClient(b.accessToken));
    await user.client.auth.revokeSession({ id: sessionB });

    await expectConnectError(server.bearerAuthClient(b.accessToken).getMe({}), Code.Unauthenticated);
    await expectConnectError(server.authClient().refresh({ refreshToken: b.refreshToken }), Code.Unauthenticated);
    expect((await user.client.auth.getMe({})).user?.id).toBe(user.user.id);
    expect((await user.client.auth.listSessions({})).sessions.map((session) => session.id)).not.toContain(sessionB);

    // Ending the session of the call itself works the same way.
    const own = server.bearerAuthClient(user.client.tokens!.accessToken);
    await own.revokeSession({ id: await currentSessionId(own) });
    await expectConnectError(own.getMe({}), Code.Unauthenticated);
  });

  test('RevokeSession of someone else’s session is NotFound and leaves it open; a non-UUID id is InvalidArgument', async () => {
    const owner = await server.createUser();
    const stranger = await server.createUser();
    const ownerSession = await currentSessionId(owner.client.auth);
    await expectConnectError(stranger.client.auth.revokeSession({ id: ownerSession }), Code.NotFound);
    expect((await owner.client.auth.getMe({})).user?.id).toBe(owner.user.id);
    const [row] = await server.query<{ revoked_at: Date | null }>('select revoked_at from sessions where id = $1', [ownerSession]);
    expect(row!.revoked_at).toBeNull();

    const error = await expectConnectError(stranger.client.auth.revokeSession({ id: 'session-1' }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['id']);
  });
});

describe('GetMyPermissions', () => {
  const adminMethods = AdminService.methods.map((m) => method('AdminService', m.name));
  const authMethods = AuthService.methods.map((m) => method('AuthService', m.name));

  test('a ROLE_USER may call no AdminService method', async () => {
    const { client } = await server.createUser({ role: Role.USER });
    const { role, methods } = await client.auth.getMyPermissions({});
    expect(role).toBe(Role.USER);
    expect(methods).toEqual([...methods].sort());
    expect(methods).toContain(method('AuthService', 'GetMe'));
    expect(methods.filter((name) => name.startsWith('yardmaster.v1.AdminService.'))).toEqual([]);
  });

  test('an admin may call every AdminService method', async () => {
    const { role, methods } = await admin.auth.getMyPermissions({});
    expect(role).toBe(Role.ADMIN);
    expect(methods).toEqual(expect.arrayContaining([...adminMethods, ...authMethods]));
  });

  test('a worker may call every AuthService method and no AdminService one', async () => {
    const { client } = await server.createUser({ role: Role.WORKER });
    const { role, methods } = await client.auth.getMyPermissions({});
    expect(role).toBe(Role.WORKER);
    expect(methods).toEqual(expect.arrayContaining(authMethods));
    expect(methods.filter((name) => adminMethods.includes(name))).toEqual([]);
  });

  test('a role change applies to the caller’s existing token at once', async () => {
    const { user, client } = await server.createUser({ role: Role.USER });
    await admin.admin.updateUser({ user: { id: user.id, role: Role.WORKER }, updateMask: { paths: ['role'] } });
    expect((await client.auth.getMyPermissions({})).role).toBe(Role.WORKER);
    expect((await client.auth.getMe({})).user?.role).toBe(Role.WORKER);
  });

  test('the permissions agree with what the server lets the caller do', async () => {
    const { client } = await server.createUser({ role: Role.USER });
    const { methods } = await client.auth.getMyPermissions({});
    expect(methods).not.toContain(method('AdminService', 'ListUsers'));
    await expectConnectError(client.admin.listUsers({}), Code.PermissionDenied, 'ROLE_NOT_ALLOWED');
  });
});

describe('rate limiting', () => {
  /** Failure counters of an account in rate_limit_counters (keyed by the account's id). */
  const accountCounterPoints = (userId: string) =>
    server.countRows(`select coalesce(sum(points), 0)::int as n from rate_limit_counters where key like '%' || $1 || '%'`, [`id:${userId}`]);

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
    const outcomes = await outcomesOf(Array.from({ length: 24 }, (_, i) => auth.login({ username: user.username, password: `wrong-guess-${i}` })));
    expect(outcomes).toEqual({ Unauthenticated: 5, ResourceExhausted: 19 });
    // Only the evaluated guesses were failures that reached the password check.
    expect(await server.countRows(`select count(*)::int as n from audit_events where action = $1 and target = $2 and reason = 'INVALID_CREDENTIALS'`, [method('AuthService', 'Login'), user.username])).toBe(5);
    // The owner, elsewhere, is not affected.
    expect((await authFrom(freshAddress()).login({ username: user.username, password })).user?.id).toBe(user.id);
  });

  test('Login: guesses sent at once to two instances share one count', async () => {
    await setSetting('auth.account_failure_limit', 5);
    const { user } = await server.createUser();
    const other = await startTestServer({ env: { TRUST_PROXY: '1' }, database: { url: server.databaseUrl, name: '', drop: async () => {} } });
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
    const outcomes = await outcomesOf(Array.from({ length: 20 }, () => auth.login({ username: uniqueName('nobody'), password: 'not-the-password' })));
    expect(outcomes).toEqual({ Unauthenticated: 8, ResourceExhausted: 12 });
  });

  test('ChangePassword: wrong current passwords sent at once are evaluated at most auth.account_failure_limit times, and nothing changes', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const user = await server.createUser();
    const outcomes = await outcomesOf(
      Array.from({ length: 12 }, (_, i) => user.client.auth.changePassword({ currentPassword: `a-wrong-guess-${i}`, newPassword: 'a-new-password-123' })),
    );
    expect(outcomes).toEqual({ InvalidArgument: 3, ResourceExhausted: 9 });
    const limited = await expectConnectError(user.client.auth.changePassword({ currentPassword: user.password, newPassword: 'a-new-password-123' }), Code.ResourceExhausted, 'RATE_LIMITED');
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
      Array.from({ length: 15 }, (_, i) => auth.register({ username: user.username, email: `${uniqueName('taken')}-${i}@example.com`, password: 'a-long-enough-password' })),
    );
    expect(outcomes).toEqual({ AlreadyExists: 4, ResourceExhausted: 11 });
    expect(await userCount()).toBe(usersBefore);
  });

  test('a guesser at one address cannot lock the owner out from another address', async () => {
    await setSetting('auth.account_failure_limit', 3);
    const { user, password } = await server.createUser();
    const attacker = authFrom(freshAddress());
    for (let attempt = 0; attempt < 3; attempt++) {
      await expectConnectError(attacker.login({ username: user.username, password: 'not-the-password' }), Code.Unauthenticated, 'INVALID_CREDENTIALS');
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
    const { auditEvents } = await admin.admin.listAuditEvents({ action: method('AuthService', 'AccountThrottled') , target: user.id });
    expect(auditEvents).toHaveLength(1);
    expect(auditEvents[0]!.reason).toBe('ACCOUNT_THROTTLED');
  });

  test('refused registrations of an account’s name, from many addresses, do not slow its sign-ins down', async () => {
    await setSetting('auth.account_throttle_threshold', 2);
    const { user, password } = await server.createUser();
    for (let attempt = 0; attempt < 6; attempt++) {
      await expectConnectError(authFrom(freshAddress()).register({ username: user.username, email: `${uniqueName('squat')}@example.com`, password: 'a-long-enough-password' }), Code.PermissionDenied, 'REGISTRATION_CLOSED');
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
    for (let attempt = 0; attempt < 2; attempt++) await expectConnectError(attacker.login({ username: user.username, password: 'wrong' }), Code.Unauthenticated);
    // The fourth failure opens a delay of 1 s on the account.
    for (let attempt = 0; attempt < 2; attempt++) await expectConnectError(authFrom(freshAddress()).login({ username: user.username, password: 'wrong' }), Code.Unauthenticated);
    await expectConnectError(attacker.login({ username: user.username, password }), Code.ResourceExhausted);
    await expectConnectError(authFrom(freshAddress()).login({ username: user.username, password }), Code.ResourceExhausted);

    const other = await server.createUser();
    await expectConnectError(other.client.admin.clearSignInThrottle({ id: user.id }), Code.PermissionDenied, 'ROLE_NOT_ALLOWED');
    await expectConnectError(admin.admin.clearSignInThrottle({ id: 'not-a-uuid' }), Code.InvalidArgument);
    await expectConnectError(admin.admin.clearSignInThrottle({ id: '01900000-0000-7000-8000-000000000000' }), Code.NotFound);

    const cleared = await admin.admin.clearSignInThrottle({ id: user.id });
    expect(cleared.wasThrottled).toBe(true);
    expect(cleared.user?.id).toBe(user.id);
    expect(await server.countRows(`select count(*)::int as n from rate_limit_counters where key like '%id:' || $1 || '%'`, [user.id])).toBe(0);
    expect((await attacker.login({ username: user.username, password })).user?.id).toBe(user.id);
    expect((await admin.admin.clearSignInThrottle({ id: user.id })).wasThrottled).toBe(false);
    const { auditEvents } = await admin.admin.listAuditEvents({ action: method('AdminService', 'ClearSignInThrottle'), target: user.id, outcome: AuditOutcome.SUCCESS });
    expect(auditEvents.map((event) => event.actorUsername)).toEqual(['admin', 'admin']);
    const { auditEvents: refused } = await admin.admin.listAuditEvents({ action: method('AdminService', 'ClearSignInThrottle'), actor: other.user.id });
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
    const rows = await server.countRows(`select count(*)::int as n from rate_limit_counters where key like '%' || $1 and points >= 5`, [address]);
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

describe('pagination input', () => {
  test('a negative page_size is InvalidArgument on page_size', async () => {
    const { client } = await server.createUser();
    for (const call of [() => client.auth.listApiKeys({ pageSize: -1 }), () => client.auth.listSessions({ pageSize: -5 })]) {
      const error = await expectConnectError(call(), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['page_size']);
    }
  });

  test.each([
    ['not base64 JSON', 'garbage'],
    ['punctuation', '%%%***'],
    ['JSON null', Buffer.from('null').toString('base64url')],
    ['a JSON number', Buffer.from('42').toString('base64url')],
    ['a JSON object without a cursor', Buffer.from('{"x":1}').toString('base64url')],
    ['a cursor of the wrong type', Buffer.from('{"c":1,"q":"x"}').toString('base64url')],
  ])('a page_token that is %s is InvalidArgument on page_token', async (_what, pageToken) => {
    const { client } = await server.createUser();
    for (const call of [() => client.auth.listApiKeys({ pageToken }), () => client.auth.listSessions({ pageToken })]) {
      const error = await expectConnectError(call(), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['page_token']);
    }
  });

  test('a page_token from another list, another filter or edited by hand is InvalidArgument on page_token', async () => {
    const user = await server.createUser();
    await server.signIn(user.user.username, user.password);
    for (const name of ['a', 'b']) await user.client.auth.createApiKey({ name });
    const keysToken = (await user.client.auth.listApiKeys({ pageSize: 1 })).nextPageToken;
    const sessionsToken = (await user.client.auth.listSessions({ pageSize: 1 })).nextPageToken;
    expect(keysToken).not.toBe('');
    expect(sessionsToken).not.toBe('');

    const edited = (() => {
      const body = JSON.parse(Buffer.from(keysToken, 'base64url').toString('utf8')) as Record<string, unknown>;
      return Buffer.from(JSON.stringify({ ...body, c: Buffer.from('not a cursor').toString('base64url') })).toString('base64url');
    })();
    for (const [what, call] of [
      ['sessions token for api keys', () => user.client.auth.listApiKeys({ pageToken: sessionsToken })],
      ['api keys token for sessions', () => user.client.auth.listSessions({ pageToken: keysToken })],
      ['token with show_revoked changed', () => user.client.auth.listApiKeys({ pageToken: keysToken, showRevoked: true })],
      ['edited cursor', () => user.client.auth.listApiKeys({ pageToken: edited })],
    ] as const) {
      const error = await connectErrorOf(call());
      expect({ what, code: Code[error.code], fields: violatedFields(error) }).toEqual({ what, code: 'InvalidArgument', fields: ['page_token'] });
    }
  });
});
