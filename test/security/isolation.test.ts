/**
 * Cross-user isolation, admin-only methods and SQL in job filters.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { Code, type Client } from '@connectrpc/connect';
import type { AdminService } from '../../gen/yardmaster/v1/admin_pb.ts';
import { BadRequestSchema, Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { connectErrorOf, expectConnectError } from '../support/assertions.ts';
import { server, userA, userB, worker, admin, postJson, expectHygienicError, expectJsonError, useSecurityServer } from './support.ts';

useSecurityServer();

// ---------------------------------------------------------------------------------------
// Isolation and roles

describe('cross-user isolation', () => {
  test("user A cannot revoke, or see, user B's API keys and sessions", async () => {
    const keyOfB = await userB.client.auth.createApiKey({ name: 'b-key' });
    const keyOfA = await userA.client.auth.createApiKey({ name: 'a-key' });
    const sessionsOfB = await userB.client.auth.listSessions({});
    expect(sessionsOfB.sessions.length).toBeGreaterThan(0);
    const sessionOfB = sessionsOfB.sessions[0]!;

    const revokeKey = await expectConnectError(() => userA.client.auth.revokeApiKey({ id: keyOfB.apiKey!.id }), Code.NotFound);
    expectHygienicError(revokeKey);
    const revokeSession = await expectConnectError(() => userA.client.auth.revokeSession({ id: sessionOfB.id }), Code.NotFound);
    expectHygienicError(revokeSession);
    // An id that exists nowhere gets exactly the same answer: existence is not leaked.
    const revokeNothing = await connectErrorOf(() => userA.client.auth.revokeApiKey({ id: randomUUID() }));
    expect(revokeNothing.code).toBe(Code.NotFound);
    expect(revokeNothing.rawMessage).toBe(revokeKey.rawMessage);
    const revokeNoSession = await connectErrorOf(() => userA.client.auth.revokeSession({ id: randomUUID() }));
    expect(revokeNoSession.rawMessage).toBe(revokeSession.rawMessage);

    const keysOfA = await userA.client.auth.listApiKeys({ showRevoked: true });
    expect(keysOfA.apiKeys.map((key) => key.id)).toContain(keyOfA.apiKey!.id);
    expect(keysOfA.apiKeys.map((key) => key.id)).not.toContain(keyOfB.apiKey!.id);
    const ownerOfAKeys = await server.query<{ user_id: string }>('select distinct user_id from api_keys where id = any($1::uuid[])', [
      keysOfA.apiKeys.map((key) => key.id),
    ]);
    expect(ownerOfAKeys.map((row) => row.user_id)).toEqual([userA.user.id]);

    const sessionsOfA = await userA.client.auth.listSessions({});
    expect(sessionsOfA.sessions.map((session) => session.id)).not.toContain(sessionOfB.id);
    const ownerOfASessions = await server.query<{ user_id: string }>('select distinct user_id from sessions where id = any($1::uuid[])', [
      sessionsOfA.sessions.map((session) => session.id),
    ]);
    expect(ownerOfASessions.map((row) => row.user_id)).toEqual([userA.user.id]);

    // B's key and session are untouched.
    const byKeyOfB = server.client({ apiKey: keyOfB.secret });
    expect((await byKeyOfB.auth.getMe({})).user?.id).toBe(userB.user.id);
    expect((await userB.client.auth.listSessions({})).sessions.map((session) => session.id)).toContain(sessionOfB.id);
    const [keyRow] = await server.query<{ revoked_at: Date | null }>('select revoked_at from api_keys where id = $1', [keyOfB.apiKey!.id]);
    expect(keyRow?.revoked_at).toBeNull();
  });
});

/** Every AdminService method, called with a harmless request. */
const adminCalls: [string, (client: Client<typeof AdminService>) => Promise<unknown>][] = [
  ['ListUsers', (c) => c.listUsers({})],
  ['GetUser', (c) => c.getUser({ id: randomUUID() })],
  [
    'CreateUser',
    (c) =>
      c.createUser({
        username: `x-${randomBytes(3).toString('hex')}`,
        email: 'x@example.com',
        password: 'a-long-password-1',
        role: Role.ADMIN,
      }),
  ],
  ['UpdateUser', (c) => c.updateUser({ user: { id: randomUUID(), role: Role.ADMIN }, updateMask: { paths: ['role'] } })],
  ['DeleteUser', (c) => c.deleteUser({ id: randomUUID(), confirm: 'x' })],
  ['ResetUserPassword', (c) => c.resetUserPassword({ id: randomUUID() })],
  ['ListSettings', (c) => c.listSettings({})],
  ['GetSetting', (c) => c.getSetting({ key: 'auth.open_registration' })],
  ['UpdateSetting', (c) => c.updateSetting({ key: 'auth.open_registration', value: { kind: { case: 'boolValue', value: true } } })],
  ['ListAuditEvents', (c) => c.listAuditEvents({})],
  ['GetMetrics', (c) => c.getMetrics({})],
  ['RotateSigningKey', (c) => c.rotateSigningKey({})],
];

describe('SQL in job filters is data', () => {
  test('label keys that could carry SQL are InvalidArgument on ListJobs, GetJobStats and WatchJobs; such values match nothing; nothing changes', async () => {
    const { job: jobOfB } = await userB.client.jobs.createJob({ type: 'noop', name: 'b-only', labels: { team: 'b' } });
    const keys = ['x?', "x'", 'x" or 1=1', "x?' is null or true --", 'Team', '$1'];
    for (const key of keys) {
      const labels = { [key]: " is null; update users set role = 'admin' --" };
      for (const call of [
        () => userA.client.jobs.listJobs({ filter: { labels } }),
        () => userA.client.jobs.getJobStats({ filter: { labels } }),
        async () => {
          for await (const message of userA.client.jobs.watchJobs({ filter: { labels } })) return message;
        },
      ]) {
        const error = await expectConnectError(call, Code.InvalidArgument);
        expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field)[0]).toMatch(/^filter\.labels/);
      }
    }
    for (const value of ["' or '1'='1", '? or true', "b' --"]) {
      expect((await userA.client.jobs.listJobs({ filter: { labels: { team: value } } })).jobs).toEqual([]);
      expect((await admin.jobs.listJobs({ filter: { labels: { team: value } } })).jobs).toEqual([]);
    }
    expect((await admin.jobs.listJobs({ filter: { labels: { team: 'b' } } })).jobs.map((job) => job.id)).toContain(jobOfB!.id);
    expect((await userA.client.auth.getMe({})).user?.role).toBe(Role.USER);
  });

  test('filters with thousands of types or statuses are InvalidArgument', async () => {
    const types = Array.from({ length: 5000 }, (_, index) => `type-${index}`);
    await expectConnectError(userA.client.jobs.listJobs({ filter: { types } }), Code.InvalidArgument);
    await expectConnectError(
      userA.client.jobs.listJobs({ filter: { statuses: Array.from({ length: 50 }, () => 1) } }),
      Code.InvalidArgument,
    );
  });
});

describe('admin methods', () => {
  test.each(adminCalls)('%s as a user and as a worker -> PermissionDenied', async (name, call) => {
    for (const caller of [userA, worker]) {
      const error = await expectConnectError(() => call(caller.client.admin), Code.PermissionDenied, 'ROLE_NOT_ALLOWED');
      expectHygienicError(error);
    }
    // The raw JSON reply is the same.
    const reply = await postJson(`/yardmaster.v1.AdminService/${name}`, '{}', {
      authorization: `Bearer ${worker.client.tokens!.accessToken}`,
    });
    expectJsonError(reply, 403, 'permission_denied', 'ROLE_NOT_ALLOWED');
  });

  test('nothing was changed by the refused calls', async () => {
    const [{ count }] = (await server.query<{ count: string }>("select count(*) from users where role = 'admin'")) as [{ count: string }];
    expect(Number(count)).toBe(1);
    const settings = await server.query<{ value: unknown }>("select value from settings where key = 'auth.open_registration'");
    expect(settings.every((row) => row.value === false)).toBe(true);
    const keys = await server.query<{ count: string }>('select count(*) from signing_keys');
    expect(Number(keys[0]!.count)).toBe(1);
    // The worker itself is fine.
    expect((await worker.client.auth.getMe({})).user?.role).toBe(Role.WORKER);
  });
});
