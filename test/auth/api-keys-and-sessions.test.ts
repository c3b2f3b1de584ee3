/**
 * AuthService API keys and sessions, and their pagination input.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { toJson } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { ListApiKeysResponseSchema } from '../../gen/yardmaster/v1/auth_pb.ts';
import { connectErrorOf, expectConnectError, violatedFields } from '../support/assertions.ts';
import { method, server, freshAddress, authFrom, openSessionCount, currentSessionId, useAuthServer } from './support.ts';

useAuthServer();

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
    expect(rows[0]!.secret_hash).not.toBe(secret);
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
    for (const call of [
      () => overConnect.auth.getMe({}),
      () => overConnect.auth.getMe({}),
      () => overGrpc.auth.getMe({}),
      () => overConnect.jobs.listJobs({}),
    ]) {
      outcomes.push(
        await call().then(
          () => 'ok',
          (error: unknown) => Code[ConnectError.from(error).code]!,
        ),
      );
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
    expect(
      await server.countRows(`select count(*)::int as n from audit_events where actor_id = $1 and reason = 'SESSION_REQUIRED'`, [user.id]),
    ).toBe(4);
    // The same calls with an access token work.
    expect((await client.auth.listApiKeys({})).apiKeys.length).toBe(keysBefore);
  });

  test('an expiry in the past or a bad name is InvalidArgument and creates no key', async () => {
    const { user, client } = await server.createUser();
    const past = await expectConnectError(
      client.auth.createApiKey({ name: 'old', expireTime: timestampFromDate(new Date(Date.now() - 60_000)) }),
      Code.InvalidArgument,
    );
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
      expect({ what, code: Code[error.code], fields: violatedFields(error) }).toEqual({
        what,
        code: 'InvalidArgument',
        fields: ['page_token'],
      });
    }
  });
});
