/**
 * AdminService ListAuditEvents (filters, pages) and GetMetrics.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, type CallOptions } from '@connectrpc/connect';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AuditOutcome } from '../../gen/yardmaster/v1/admin_pb.ts';
import { Role, type User } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import {
  type ListAuditInit,
  service,
  unknownUuid,
  requestId,
  withRequestId,
  jsonValue,
  createAccount,
  allAuditPages,
  server,
  admin,
  adminUser,
  useAdminServer,
} from './support.ts';

useAdminServer();

// ---------------------------------------------------------------------------------------
// ListAuditEvents
// ---------------------------------------------------------------------------------------

describe('ListAuditEvents', () => {
  /** The actions of one scripted admin session, each with its own request id. */
  let script: { rid: string; action: string; target: string; outcome: AuditOutcome; actor: string }[];
  let start: Date;
  let end: Date;
  let subject: User;
  let subjectPassword: string;

  beforeAll(async () => {
    const name = `audit-${randomHex()}`;
    subjectPassword = `password-of-${name}`;
    script = [];
    const step = async (
      method: string,
      target: string,
      outcome: AuditOutcome,
      run: (options: CallOptions) => Promise<unknown>,
      actor = adminUser.id,
    ) => {
      const rid = requestId(method);
      script.push({ rid, action: method.includes('.') ? method : `${service}.${method}`, target, outcome, actor });
      await run(withRequestId(rid));
    };
    start = new Date();
    await step('CreateUser', name, AuditOutcome.SUCCESS, async (o) => {
      subject = (
        await admin.admin.createUser({ username: name, email: `${name}@example.com`, password: subjectPassword, role: Role.USER }, o)
      ).user!;
    });
    await step('UpdateUser', '(subject)', AuditOutcome.SUCCESS, (o) =>
      admin.admin.updateUser({ user: { id: subject.id, email: `${name}-2@example.com` }, updateMask: { paths: ['email'] } }, o),
    );
    await step('UpdateSetting', 'auth.account_throttle_max_delay', AuditOutcome.SUCCESS, (o) =>
      admin.admin.updateSetting({ key: 'auth.account_throttle_max_delay', value: jsonValue('20m') }, o),
    );
    await step('UpdateUser', '(subject)', AuditOutcome.FAILURE, (o) =>
      expectConnectError(admin.admin.updateUser({ user: { id: subject.id }, updateMask: { paths: [] } }, o), Code.InvalidArgument),
    );
    await step('ResetUserPassword', '(subject)', AuditOutcome.SUCCESS, (o) =>
      admin.admin.resetUserPassword({ id: subject.id, newPassword: subjectPassword }, o),
    );
    await step(
      'yardmaster.v1.AuthService.Login',
      name,
      AuditOutcome.SUCCESS,
      (o) => server.client().auth.login({ username: name, password: subjectPassword }, o),
      '(subject)',
    );
    await step('UpdateSetting', 'auth.account_throttle_max_delay', AuditOutcome.SUCCESS, (o) =>
      admin.admin.updateSetting({ key: 'auth.account_throttle_max_delay', value: jsonValue(null) }, o),
    );
    await step('DeleteUser', '(subject)', AuditOutcome.SUCCESS, (o) => admin.admin.deleteUser({ id: subject.id, confirm: name }, o));
    // Calls of methods that are not audited.
    await admin.admin.listUsers({}, withRequestId(requestId('not-audited')));
    await admin.admin.getMetrics({}, withRequestId(requestId('not-audited')));
    await expectConnectError(admin.admin.getUser({ id: subject.id }, withRequestId(requestId('not-audited'))), Code.NotFound);
    end = new Date(Date.now() + 1);
    for (const entry of script) {
      if (entry.target === '(subject)') entry.target = subject.id;
      if (entry.actor === '(subject)') entry.actor = subject.id;
    }
  });

  const inWindow = (): ListAuditInit => ({ startTime: timestampFromDate(start), endTime: timestampFromDate(end) });
  const newestFirst = () => [...script].reverse();

  test('records every admin action with actor, full method name, target, client address, request id and outcome, newest first', async () => {
    const { auditEvents, nextPageToken } = await admin.admin.listAuditEvents({ ...inWindow(), pageSize: 100 });
    expect(nextPageToken).toBe('');
    expect(auditEvents.map((e) => e.requestId)).toEqual(newestFirst().map((s) => s.rid));
    for (const [i, expected] of newestFirst().entries()) {
      const event = auditEvents[i]!;
      expect(event.action, expected.rid).toBe(expected.action);
      expect(event.target, expected.rid).toBe(expected.target);
      expect(event.outcome, expected.rid).toBe(expected.outcome);
      expect(event.actorId, expected.rid).toBe(expected.actor);
      expect(event.actorUsername, expected.rid).toBe(expected.actor === adminUser.id ? 'admin' : subject.username);
      expect(event.clientAddress, expected.rid).toBe('127.0.0.1');
      expect(event.id).toMatch(/^[0-9a-f-]{36}$/);
      const at = timestampDate(event.createTime!).getTime();
      expect(at).toBeGreaterThanOrEqual(start.getTime());
      expect(at).toBeLessThan(end.getTime());
      if (expected.outcome === AuditOutcome.SUCCESS) {
        expect(event.errorCode).toBe('');
        expect(event.reason).toBe('');
      } else {
        expect(event.errorCode).toBe('invalid_argument');
      }
    }
    const times = auditEvents.map((e) => timestampDate(e.createTime!).getTime());
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });

  test('the request id is the x-request-id the client sent, or the one the server answered with', async () => {
    const rid = script[0]!.rid;
    const { auditEvents } = await admin.admin.listAuditEvents({ ...inWindow(), action: `${service}.CreateUser` });
    expect(auditEvents.map((e) => e.requestId)).toEqual([rid]);

    let answered: string | null = null;
    const name = `rid-${randomHex()}`;
    const { user } = await admin.admin.createUser(
      { username: name, email: `${name}@example.com`, password: 'a-long-enough-password', role: Role.USER },
      { onHeader: (headers) => (answered = headers.get('x-request-id')) },
    );
    expect(answered).toBeTruthy();
    const { auditEvents: mine } = await admin.admin.listAuditEvents({ target: name });
    expect(mine).toHaveLength(1);
    expect(mine[0]!.requestId).toBe(answered);
    await admin.admin.deleteUser({ id: user!.id, confirm: name });
  });

  test('filters by actor, given by id or by username', async () => {
    const adminEvents = script
      .filter((s) => s.actor === adminUser.id)
      .reverse()
      .map((s) => s.rid);
    const byId = await admin.admin.listAuditEvents({ ...inWindow(), actor: adminUser.id });
    expect(byId.auditEvents.map((e) => e.requestId)).toEqual(adminEvents);
    const byName = await admin.admin.listAuditEvents({ ...inWindow(), actor: 'admin' });
    expect(byName.auditEvents.map((e) => e.requestId)).toEqual(adminEvents);
    const byUpper = await admin.admin.listAuditEvents({ ...inWindow(), actor: ' ADMIN ' });
    expect(byUpper.auditEvents.map((e) => e.requestId)).toEqual(adminEvents);
    // The deleted account's events stay, under its id and its name as it was then.
    const bySubject = await admin.admin.listAuditEvents({ ...inWindow(), actor: subject.id });
    expect(bySubject.auditEvents.map((e) => e.action)).toEqual(['yardmaster.v1.AuthService.Login']);
    expect((await admin.admin.listAuditEvents({ ...inWindow(), actor: subject.username })).auditEvents).toHaveLength(1);
    expect((await admin.admin.listAuditEvents({ ...inWindow(), actor: 'nobody-at-all' })).auditEvents).toEqual([]);
    expect((await admin.admin.listAuditEvents({ ...inWindow(), actor: unknownUuid })).auditEvents).toEqual([]);
  });

  test('filters by action: a full method name, or a service name for every method of the service', async () => {
    const updates = await admin.admin.listAuditEvents({ ...inWindow(), action: `${service}.UpdateUser` });
    expect(updates.auditEvents.map((e) => e.requestId)).toEqual(
      script
        .filter((s) => s.action === `${service}.UpdateUser`)
        .reverse()
        .map((s) => s.rid),
    );
    expect(updates.auditEvents.map((e) => e.outcome)).toEqual([AuditOutcome.FAILURE, AuditOutcome.SUCCESS]);

    const adminService = await admin.admin.listAuditEvents({ ...inWindow(), action: service });
    expect(adminService.auditEvents.map((e) => e.requestId)).toEqual(
      script
        .filter((s) => s.action.startsWith(`${service}.`))
        .reverse()
        .map((s) => s.rid),
    );
    const authService = await admin.admin.listAuditEvents({ ...inWindow(), action: 'yardmaster.v1.AuthService' });
    expect(authService.auditEvents.map((e) => e.action)).toEqual(['yardmaster.v1.AuthService.Login']);

    // Not a name prefix, and not a pattern.
    for (const action of [
      'yardmaster.v1.AdminServ',
      `${service}.Update`,
      `${service}.%`,
      `${service}._pdateUser`,
      `${service}.ListUsers`,
    ]) {
      expect((await admin.admin.listAuditEvents({ ...inWindow(), action })).auditEvents, action).toEqual([]);
    }
  });

  test('filters by target and by outcome', async () => {
    const onSubject = await admin.admin.listAuditEvents({ ...inWindow(), target: subject.id });
    expect(onSubject.auditEvents.map((e) => e.requestId)).toEqual(
      script
        .filter((s) => s.target === subject.id)
        .reverse()
        .map((s) => s.rid),
    );
    const onSetting = await admin.admin.listAuditEvents({ ...inWindow(), target: 'auth.account_throttle_max_delay' });
    expect(onSetting.auditEvents).toHaveLength(2);
    const byName = await admin.admin.listAuditEvents({ ...inWindow(), target: subject.username, action: service });
    expect(byName.auditEvents.map((e) => e.action)).toEqual([`${service}.CreateUser`]);

    const failures = await admin.admin.listAuditEvents({ ...inWindow(), outcome: AuditOutcome.FAILURE });
    expect(failures.auditEvents.map((e) => e.requestId)).toEqual(
      script.filter((s) => s.outcome === AuditOutcome.FAILURE).map((s) => s.rid),
    );
    expect(failures.auditEvents[0]).toMatchObject({ errorCode: 'invalid_argument', target: subject.id });
    const successes = await admin.admin.listAuditEvents({ ...inWindow(), outcome: AuditOutcome.SUCCESS });
    expect(successes.auditEvents).toHaveLength(script.length - 1);
    expect(successes.auditEvents.every((e) => e.outcome === AuditOutcome.SUCCESS)).toBe(true);

    // Filters combine.
    const combined = await admin.admin.listAuditEvents({
      ...inWindow(),
      actor: 'admin',
      action: `${service}.UpdateUser`,
      target: subject.id,
      outcome: AuditOutcome.SUCCESS,
    });
    expect(combined.auditEvents.map((e) => e.requestId)).toEqual([script[1]!.rid]);
  });

  test('filters by time: start_time inclusive, end_time exclusive', async () => {
    const { auditEvents } = await admin.admin.listAuditEvents({ ...inWindow(), pageSize: 100 });
    const oldestFirst = [...auditEvents].reverse();
    const pivot = oldestFirst[3]!;
    const pivotTime = timestampDate(pivot.createTime!);
    const sameInstant = oldestFirst.filter((e) => timestampDate(e.createTime!).getTime() === pivotTime.getTime()).map((e) => e.id);

    const since = await admin.admin.listAuditEvents({ startTime: pivot.createTime, endTime: timestampFromDate(end), pageSize: 100 });
    const sinceIds = since.auditEvents.map((e) => e.id);
    expect(sinceIds).toContain(pivot.id);
    expect(sinceIds).toEqual(auditEvents.filter((e) => timestampDate(e.createTime!).getTime() >= pivotTime.getTime()).map((e) => e.id));

    const until = await admin.admin.listAuditEvents({ startTime: timestampFromDate(start), endTime: pivot.createTime, pageSize: 100 });
    const untilIds = until.auditEvents.map((e) => e.id);
    for (const id of sameInstant) expect(untilIds).not.toContain(id);
    expect(untilIds).toEqual(auditEvents.filter((e) => timestampDate(e.createTime!).getTime() < pivotTime.getTime()).map((e) => e.id));

    const future = await admin.admin.listAuditEvents({ startTime: timestampFromDate(new Date(Date.now() + 60_000)) });
    expect(future.auditEvents).toEqual([]);
    const beforeEverything = await admin.admin.listAuditEvents({ endTime: timestampFromDate(new Date(0)) });
    expect(beforeEverything.auditEvents).toEqual([]);
  });

  test('pages visit every event exactly once, newest first; changing a filter between pages is InvalidArgument', async () => {
    const expected = newestFirst().map((s) => s.rid);
    for (const pageSize of [1, 3, 5]) {
      const { events, pages } = await allAuditPages(admin.admin, inWindow(), pageSize);
      expect(
        events.map((e) => e.requestId),
        `page_size ${pageSize}`,
      ).toEqual(expected);
      expect(new Set(events.map((e) => e.id)).size).toBe(expected.length);
      expect(pages).toBe(Math.ceil(expected.length / pageSize));
    }
    const { events } = await allAuditPages(admin.admin, { ...inWindow(), actor: 'admin', action: service }, 2);
    expect(events.map((e) => e.requestId)).toEqual(
      script
        .filter((s) => s.actor === adminUser.id)
        .reverse()
        .map((s) => s.rid),
    );

    const first = await admin.admin.listAuditEvents({ ...inWindow(), pageSize: 2 });
    for (const changed of [
      { actor: 'admin' },
      { action: service },
      { target: subject.id },
      { outcome: AuditOutcome.SUCCESS },
      { startTime: timestampFromDate(new Date(start.getTime() - 1)) },
    ]) {
      const err = await expectConnectError(
        admin.admin.listAuditEvents({ ...inWindow(), ...changed, pageSize: 2, pageToken: first.nextPageToken }),
        Code.InvalidArgument,
      );
      expect(violatedFields(err), Object.keys(changed).join(',')).toEqual(['page_token']);
    }
    expect(violatedFields(await expectConnectError(admin.admin.listAuditEvents({ pageToken: 'garbage' }), Code.InvalidArgument))).toEqual([
      'page_token',
    ]);
    expect(violatedFields(await expectConnectError(admin.admin.listAuditEvents({ pageSize: -5 }), Code.InvalidArgument))).toEqual([
      'page_size',
    ]);
  });

  test('non-audited methods leave no event', async () => {
    const rows = await server.query<{ n: string }>("select count(*) as n from audit_events where request_id like 'not-audited-%'");
    expect(Number(rows[0]!.n)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// GetMetrics (a server of its own, so that totals are exact)
// ---------------------------------------------------------------------------------------

describe('GetMetrics', () => {
  let fresh: TestServer;
  let freshAdmin: YardmasterClient;

  beforeAll(async () => {
    fresh = await startTestServer();
    freshAdmin = await fresh.adminClient();
  });
  afterAll(() => fresh?.close());

  async function metrics() {
    const m = await freshAdmin.admin.getMetrics({});
    return {
      usersTotal: Number(m.usersTotal),
      usersEnabled: Number(m.usersEnabled),
      usersActive24h: Number(m.usersActive24h),
      usersByRole: Object.fromEntries(Object.entries(m.usersByRole).map(([role, n]) => [role, Number(n)])),
      apiKeysActive: Number(m.apiKeysActive),
      sessionsActive: Number(m.sessionsActive),
    };
  }

  test('totals follow users, roles, sign-ins, sessions and API keys', async () => {
    expect(await metrics()).toEqual({
      usersTotal: 1,
      usersEnabled: 1,
      usersActive24h: 1,
      usersByRole: { ROLE_USER: 0, ROLE_ADMIN: 1, ROLE_WORKER: 0 },
      apiKeysActive: 0,
      sessionsActive: 1,
    });

    const alice = await createAccount(freshAdmin.admin, { username: 'alice' });
    await createAccount(freshAdmin.admin, { username: 'worker-1', role: Role.WORKER });
    await createAccount(freshAdmin.admin, { username: 'worker-2', role: Role.WORKER });
    // Created, never signed in: not active in the last 24 h, no session.
    expect(await metrics()).toEqual({
      usersTotal: 4,
      usersEnabled: 4,
      usersActive24h: 1,
      usersByRole: { ROLE_USER: 1, ROLE_ADMIN: 1, ROLE_WORKER: 2 },
      apiKeysActive: 0,
      sessionsActive: 1,
    });

    const aliceClient = await fresh.signIn('alice', alice.password);
    await fresh.signIn('alice', alice.password);
    expect(await metrics()).toMatchObject({ usersActive24h: 2, sessionsActive: 3 });

    const { apiKey } = await aliceClient.auth.createApiKey({ name: 'one' });
    await aliceClient.auth.createApiKey({ name: 'two' });
    await freshAdmin.auth.createApiKey({ name: 'admin-key' });
    expect((await metrics()).apiKeysActive).toBe(3);
    await aliceClient.auth.revokeApiKey({ id: apiKey!.id });
    expect((await metrics()).apiKeysActive).toBe(2);

    await aliceClient.logout();
    expect((await metrics()).sessionsActive).toBe(2);

    // Active in the last 24 hours means exactly that.
    await fresh.query("update users set last_seen_at = now() - interval '25 hours' where username = 'alice'");
    expect((await metrics()).usersActive24h).toBe(1);

    // Deactivation: one fewer enabled account, its sessions end.
    await freshAdmin.admin.updateUser({ user: { id: alice.user.id, active: false }, updateMask: { paths: ['active'] } });
    expect(await metrics()).toMatchObject({ usersTotal: 4, usersEnabled: 3, sessionsActive: 1 });

    // Promotion moves an account between roles.
    const worker = (await freshAdmin.admin.listUsers({ query: 'worker-1' })).users[0]!;
    await freshAdmin.admin.updateUser({ user: { id: worker.id, role: Role.ADMIN }, updateMask: { paths: ['role'] } });
    expect((await metrics()).usersByRole).toEqual({ ROLE_USER: 1, ROLE_ADMIN: 2, ROLE_WORKER: 1 });

    // Deletion takes the account's keys with it.
    await freshAdmin.admin.deleteUser({ id: alice.user.id, confirm: 'alice' });
    expect(await metrics()).toEqual({
      usersTotal: 3,
      usersEnabled: 3,
      usersActive24h: 1,
      usersByRole: { ROLE_USER: 0, ROLE_ADMIN: 2, ROLE_WORKER: 1 },
      apiKeysActive: 1,
      sessionsActive: 1,
    });
  });
});
