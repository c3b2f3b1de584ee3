/**
 * AdminService access rules: who may call which method, and what a refused call leaves behind.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { Code, type CallOptions } from '@connectrpc/connect';
import { AdminService, AuditOutcome } from '../../gen/yardmaster/v1/admin_pb.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { expectConnectError, randomHex, reasonOf } from '../support/assertions.ts';
import {
  type AdminClient,
  service,
  requestId,
  withRequestId,
  jsonValue,
  type Account,
  createAccount,
  userRow,
  auditRowsByRequestId,
  server,
  admin,
  useAdminServer,
} from './support.ts';

useAdminServer();

// ---------------------------------------------------------------------------------------
// Access: only admins
// ---------------------------------------------------------------------------------------

describe('access', () => {
  interface AdminCall {
    method: string;
    audited: boolean;
    /** Expected audit target of the call (audited methods only). */
    target?: string;
    call: (client: AdminClient, options: CallOptions) => Promise<unknown>;
  }

  let victim: Account;
  let calls: AdminCall[];

  beforeAll(async () => {
    victim = await createAccount(admin.admin, { username: `victim-${randomHex()}` });
    const victimId = victim.user.id;
    const victimType = `victim-type-${randomHex()}`;
    await admin.admin.createJobType({ jobType: { name: victimType } });
    calls = [
      { method: 'ListUsers', audited: false, call: (c, o) => c.listUsers({}, o) },
      { method: 'GetUser', audited: false, call: (c, o) => c.getUser({ id: victimId }, o) },
      {
        method: 'CreateUser',
        audited: true,
        target: 'intruder-made',
        call: (c, o) =>
          c.createUser(
            { username: 'intruder-made', email: 'intruder-made@example.com', password: 'a-long-enough-password', role: Role.ADMIN },
            o,
          ),
      },
      {
        method: 'UpdateUser',
        audited: true,
        target: victimId,
        call: (c, o) => c.updateUser({ user: { id: victimId, role: Role.ADMIN }, updateMask: { paths: ['role'] } }, o),
      },
      {
        method: 'DeleteUser',
        audited: true,
        target: victimId,
        call: (c, o) => c.deleteUser({ id: victimId, confirm: victim.user.username }, o),
      },
      {
        method: 'ResetUserPassword',
        audited: true,
        target: victimId,
        call: (c, o) => c.resetUserPassword({ id: victimId, newPassword: 'chosen-by-an-intruder' }, o),
      },
      { method: 'ClearSignInThrottle', audited: true, target: victimId, call: (c, o) => c.clearSignInThrottle({ id: victimId }, o) },
      { method: 'ListSettings', audited: false, call: (c, o) => c.listSettings({}, o) },
      { method: 'GetSetting', audited: false, call: (c, o) => c.getSetting({ key: 'auth.open_registration' }, o) },
      {
        method: 'UpdateSetting',
        audited: true,
        target: 'auth.open_registration',
        call: (c, o) => c.updateSetting({ key: 'auth.open_registration', value: jsonValue(true) }, o),
      },
      { method: 'ListAuditEvents', audited: false, call: (c, o) => c.listAuditEvents({}, o) },
      { method: 'GetMetrics', audited: false, call: (c, o) => c.getMetrics({}, o) },
      { method: 'RotateSigningKey', audited: true, target: '', call: (c, o) => c.rotateSigningKey({}, o) },
      {
        method: 'CreateJobType',
        audited: true,
        target: 'intruder-type',
        call: (c, o) => c.createJobType({ jobType: { name: 'intruder-type' } }, o),
      },
      {
        method: 'UpdateJobType',
        audited: true,
        target: victimType,
        call: (c, o) =>
          c.updateJobType({ jobType: { name: victimType, description: 'taken over' }, updateMask: { paths: ['description'] } }, o),
      },
      { method: 'DeleteJobType', audited: true, target: victimType, call: (c, o) => c.deleteJobType({ name: victimType }, o) },
    ];
  });

  /** What a refused call must not have changed. */
  async function snapshot() {
    return {
      users: await server.countRows('select count(*) as n from users'),
      intruder: await server.countRows("select count(*) as n from users where username = 'intruder-made'"),
      victim: await userRow(server, victim.user.id),
      settings: await server.query('select key, value from settings order by key'),
      signingKeys: await server.query('select id, retired_at from signing_keys order by id'),
      jobTypes: await server.query('select name, description, version from job_type_declarations order by name'),
    };
  }

  test('the table of calls covers every AdminService method', () => {
    expect(calls.map((c) => c.method).sort()).toEqual(AdminService.methods.map((m) => m.name).sort());
    // Audited exactly where the contract says so.
    const audited = [
      'CreateUser',
      'UpdateUser',
      'DeleteUser',
      'ResetUserPassword',
      'ClearSignInThrottle',
      'UpdateSetting',
      'RotateSigningKey',
      'CreateJobType',
      'UpdateJobType',
      'DeleteJobType',
    ];
    expect(
      calls
        .filter((c) => c.audited)
        .map((c) => c.method)
        .sort(),
    ).toEqual(audited.sort());
  });

  for (const [kind, role] of [
    ['ROLE_USER', Role.USER],
    ['ROLE_WORKER', Role.WORKER],
  ] as const) {
    test(`every method is PermissionDenied for a ${kind} caller, changes nothing, and refused audited calls are recorded as FAILURE`, async () => {
      const caller = await server.createUser({ role });
      const before = await snapshot();
      for (const { method, audited, target, call } of calls) {
        const rid = requestId(`${kind}-${method}`);
        const err = await expectConnectError(call(caller.client.admin, withRequestId(rid)), Code.PermissionDenied);
        expect(reasonOf(err), method).toBe('ROLE_NOT_ALLOWED');
        const rows = await auditRowsByRequestId(server, rid);
        if (!audited) {
          expect(rows, `${method} is not audited`).toHaveLength(0);
          continue;
        }
        expect(rows, `${method} is audited`).toHaveLength(1);
        expect(rows[0], method).toMatchObject({
          actor_id: caller.user.id,
          actor_username: caller.user.username,
          action: `${service}.${method}`,
          target: target === '' ? null : target,
          client_address: '127.0.0.1',
          outcome: 'failure',
          error_code: 'permission_denied',
          reason: 'ROLE_NOT_ALLOWED',
        });
      }
      expect(await snapshot()).toEqual(before);

      // The same refusals through the API: one FAILURE event per audited method.
      const { auditEvents } = await admin.admin.listAuditEvents({ actor: caller.user.id, outcome: AuditOutcome.FAILURE, pageSize: 100 });
      expect(auditEvents.map((e) => e.action).sort()).toEqual(
        calls
          .filter((c) => c.audited)
          .map((c) => `${service}.${c.method}`)
          .sort(),
      );
      for (const event of auditEvents) {
        expect(event.outcome).toBe(AuditOutcome.FAILURE);
        expect(event.errorCode).toBe('permission_denied');
        expect(event.actorUsername).toBe(caller.user.username);
      }
    });
  }

  test('every method is Unauthenticated without credentials, changes nothing, and refused audited calls are recorded as FAILURE', async () => {
    const anonymous = server.client();
    const before = await snapshot();
    for (const { method, audited, target, call } of calls) {
      const rid = requestId(`anon-${method}`);
      const err = await expectConnectError(call(anonymous.admin, withRequestId(rid)), Code.Unauthenticated);
      expect(reasonOf(err), method).toBe('CREDENTIALS_REQUIRED');
      const rows = await auditRowsByRequestId(server, rid);
      if (!audited) {
        expect(rows, `${method} is not audited`).toHaveLength(0);
        continue;
      }
      expect(rows, `${method} is audited`).toHaveLength(1);
      expect(rows[0], method).toMatchObject({
        actor_id: null,
        actor_username: null,
        action: `${service}.${method}`,
        target: target === '' ? null : target,
        client_address: '127.0.0.1',
        outcome: 'failure',
        error_code: 'unauthenticated',
        reason: 'CREDENTIALS_REQUIRED',
      });
    }
    expect(await snapshot()).toEqual(before);
  });

  test('a ROLE_USER API key is refused like its access token', async () => {
    const caller = await server.createUser({ role: Role.USER });
    const { secret } = await caller.client.auth.createApiKey({ name: 'probe' });
    const byKey = server.bearerClient(secret);
    expect((await byKey.auth.getMe({})).user?.id).toBe(caller.user.id);
    const err = await expectConnectError(byKey.admin.listUsers({}), Code.PermissionDenied);
    expect(reasonOf(err)).toBe('ROLE_NOT_ALLOWED');
    await expectConnectError(
      byKey.admin.createUser({
        username: `k-${randomHex()}`,
        email: `k-${randomHex()}@example.com`,
        password: 'a-long-enough-password',
        role: Role.ADMIN,
      }),
      Code.PermissionDenied,
    );
  });

  test('a malformed or forged bearer credential is Unauthenticated', async () => {
    for (const bearer of ['not-a-jwt', 'ym_not-a-real-key', `${admin.tokens!.accessToken.slice(0, -4)}AAAA`]) {
      await expectConnectError(server.bearerClient(bearer).admin.listUsers({}), Code.Unauthenticated);
    }
  });

  test('a call with invalid credentials to an audited method is recorded as FAILURE (AUDIT_MODE_ALL: every call)', async () => {
    const rid = requestId('forged-create');
    await expectConnectError(
      server.bearerClient('not-a-jwt').admin.createUser(
        {
          username: `forged-${randomHex()}`,
          email: `forged-${randomHex()}@example.com`,
          password: 'a-long-enough-password',
          role: Role.ADMIN,
        },
        withRequestId(rid),
      ),
      Code.Unauthenticated,
    );
    const rows = await auditRowsByRequestId(server, rid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: `${service}.CreateUser`, outcome: 'failure', error_code: 'unauthenticated', actor_id: null });
  });
});
