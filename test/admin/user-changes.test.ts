/**
 * AdminService CreateUser, UpdateUser, DeleteUser and ResetUserPassword, and the rule that the last active admin stays.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { expectConnectError, randomHex, reasonOf, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import {
  service,
  unknownUuid,
  requestId,
  withRequestId,
  createAccount,
  userRow,
  auditRowsByRequestId,
  server,
  admin,
  adminUser,
  useAdminServer,
} from './support.ts';

useAdminServer();

// ---------------------------------------------------------------------------------------
// CreateUser
// ---------------------------------------------------------------------------------------

describe('CreateUser', () => {
  const userCount = () => server.countRows('select count(*) as n from users');

  test('creates an account of every role, normalised, with a hashed password, able to sign in', async () => {
    for (const [role, stored] of [
      [Role.USER, 'user'],
      [Role.ADMIN, 'admin'],
      [Role.WORKER, 'worker'],
    ] as const) {
      const name = `New-${stored}-${randomHex()}`;
      const password = `password-for-${name}`;
      const before = Date.now();
      const { user } = await admin.admin.createUser({ username: `  ${name} `, email: ` ${name}@Example.COM `, password, role });
      expect(user!.username).toBe(name.toLowerCase());
      expect(user!.email).toBe(`${name.toLowerCase()}@example.com`);
      expect(user!.role).toBe(role);
      expect(user!.active).toBe(true);
      expect(user!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(timestampDate(user!.createTime!).getTime()).toBeGreaterThanOrEqual(before - 5);
      expect(user!.lastLoginTime).toBeUndefined();

      const row = (await userRow(server, user!.id))!;
      expect(row).toMatchObject({ username: name.toLowerCase(), email: `${name.toLowerCase()}@example.com`, role: stored, active: true });
      expect(row.password_hash).toMatch(/^\$argon2id\$/);
      expect(row.password_hash).not.toContain(password);

      const client = await server.signIn(name.toUpperCase(), password);
      expect((await client.auth.getMe({})).user!.role).toBe(role);
    }
  });

  test('a missing role is InvalidArgument naming role, and nothing is written', async () => {
    const before = await userCount();
    const name = `norole-${randomHex()}`;
    const err = await expectConnectError(
      admin.admin.createUser({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(err)).toEqual(['role']);
    const unknownRole = await expectConnectError(
      admin.admin.createUser({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password', role: 42 as Role }),
      Code.InvalidArgument,
    );
    expect(violatedFields(unknownRole)).toEqual(['role']);
    expect(await userCount()).toBe(before);
    expect(await server.countRows('select count(*) as n from users where username = $1', [name])).toBe(0);
  });

  test('several bad fields at once are one InvalidArgument naming each of them, and nothing is written', async () => {
    const before = await userCount();
    const err = await expectConnectError(
      admin.admin.createUser({ username: 'x', email: 'not-an-e-mail', password: 'short', role: Role.USER }),
      Code.InvalidArgument,
    );
    expect(violatedFields(err)).toEqual(['username', 'email', 'password']);
    for (const [username, email, password, field] of [
      ['Has Space', 'ok@example.com', 'a-long-enough-password', 'username'],
      ['x'.repeat(65), 'ok@example.com', 'a-long-enough-password', 'username'],
      ['fine-name', 'no-domain@', 'a-long-enough-password', 'email'],
      ['fine-name', 'ok@example.com', '11-chars-pw', 'password'],
    ] as const) {
      const one = await expectConnectError(admin.admin.createUser({ username, email, password, role: Role.USER }), Code.InvalidArgument);
      expect(violatedFields(one), `${username} ${email} ${password}`).toEqual([field]);
    }
    expect(await userCount()).toBe(before);
  });

  test('a missing role together with other bad fields is one InvalidArgument naming every field', async () => {
    const before = await userCount();
    const err = await expectConnectError(
      admin.admin.createUser({ username: 'x', email: 'not-an-e-mail', password: 'short' }),
      Code.InvalidArgument,
    );
    expect(new Set(violatedFields(err))).toEqual(new Set(['username', 'email', 'password', 'role']));
    expect(await userCount()).toBe(before);
  });

  test('a taken username or e-mail (in any case) is AlreadyExists naming it, and nothing is written', async () => {
    const taken = await createAccount(admin.admin);
    const before = await userCount();

    const byName = await expectConnectError(
      admin.admin.createUser({
        username: taken.user.username.toUpperCase(),
        email: `other-${randomHex()}@example.com`,
        password: 'a-long-enough-password',
        role: Role.USER,
      }),
      Code.AlreadyExists,
    );
    expect(violatedFields(byName)).toEqual(['username']);

    const byEmail = await expectConnectError(
      admin.admin.createUser({
        username: `other-${randomHex()}`,
        email: taken.user.email.toUpperCase(),
        password: 'a-long-enough-password',
        role: Role.USER,
      }),
      Code.AlreadyExists,
    );
    expect(violatedFields(byEmail)).toEqual(['email']);

    const both = await expectConnectError(
      admin.admin.createUser({
        username: taken.user.username,
        email: taken.user.email,
        password: 'a-long-enough-password',
        role: Role.WORKER,
      }),
      Code.AlreadyExists,
    );
    expect(violatedFields(both).length).toBeGreaterThan(0);

    expect(await userCount()).toBe(before);
    // The existing account is untouched: its password still works.
    await server.signIn(taken.user.username, taken.password);
  });

  test('racing creations of one username: exactly one succeeds, the other is AlreadyExists', async () => {
    const name = `race-${randomHex()}`;
    const attempts = await Promise.allSettled(
      [1, 2].map((i) =>
        admin.admin.createUser({ username: name, email: `${name}-${i}@example.com`, password: 'a-long-enough-password', role: Role.USER }),
      ),
    );
    expect(attempts.filter((a) => a.status === 'fulfilled')).toHaveLength(1);
    const failure = attempts.find((a) => a.status === 'rejected') as PromiseRejectedResult;
    expect(Code[ConnectError.from(failure.reason).code]).toBe(Code[Code.AlreadyExists]);
    expect(await server.countRows('select count(*) as n from users where username = $1', [name])).toBe(1);
  });

  test('is audited with the username as target', async () => {
    const rid = requestId('create');
    const name = `audited-${randomHex()}`;
    const { user } = await admin.admin.createUser(
      { username: name, email: `${name}@example.com`, password: 'a-long-enough-password', role: Role.USER },
      withRequestId(rid),
    );
    const rows = await auditRowsByRequestId(server, rid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      actor_id: adminUser.id,
      actor_username: 'admin',
      action: `${service}.CreateUser`,
      target: name,
      outcome: 'success',
      error_code: null,
    });
    expect(JSON.stringify(rows)).not.toContain('a-long-enough-password');
    expect(user!.username).toBe(name);
  });
});

// ---------------------------------------------------------------------------------------
// UpdateUser
// ---------------------------------------------------------------------------------------

describe('UpdateUser', () => {
  test('changes only the fields named in update_mask', async () => {
    const { user } = await createAccount(admin.admin);
    const before = (await userRow(server, user.id))!;
    const newEmail = `changed-${randomHex()}@Example.com`;
    // Every field carries a new value; only the e-mail is in the mask.
    const { user: updated } = await admin.admin.updateUser({
      user: { id: user.id, username: `ignored-${randomHex()}`, email: newEmail, role: Role.ADMIN, active: false },
      updateMask: { paths: ['email'] },
    });
    expect(updated!.email).toBe(newEmail.toLowerCase());
    expect(updated!.username).toBe(user.username);
    expect(updated!.role).toBe(Role.USER);
    expect(updated!.active).toBe(true);
    const after = (await userRow(server, user.id))!;
    expect(after).toMatchObject({
      username: before.username,
      role: 'user',
      active: true,
      email: newEmail.toLowerCase(),
      password_hash: before.password_hash,
    });
    expect(after.created_at).toEqual(before.created_at);
    expect(after.updated_at.getTime()).toBeGreaterThan(before.updated_at.getTime());

    // Several fields at once.
    const newName = `Renamed-${randomHex()}`;
    const { user: again } = await admin.admin.updateUser({
      user: { id: user.id, username: newName, role: Role.WORKER },
      updateMask: { paths: ['username', 'role'] },
    });
    expect(again).toMatchObject({ username: newName.toLowerCase(), role: Role.WORKER, active: true, email: newEmail.toLowerCase() });
    expect(await userRow(server, user.id)).toMatchObject({ username: newName.toLowerCase(), role: 'worker' });
    expect((await admin.admin.getUser({ id: user.id })).user).toMatchObject({ username: newName.toLowerCase(), role: Role.WORKER });
  });

  test('an empty or missing update_mask is InvalidArgument naming update_mask, and nothing is written', async () => {
    const { user } = await createAccount(admin.admin);
    const before = await userRow(server, user.id);
    for (const updateMask of [{ paths: [] }, undefined]) {
      const err = await expectConnectError(
        admin.admin.updateUser({ user: { id: user.id, email: `x-${randomHex()}@example.com` }, updateMask }),
        Code.InvalidArgument,
      );
      expect(violatedFields(err)).toEqual(['update_mask']);
    }
    expect(await userRow(server, user.id)).toEqual(before);
  });

  test('unknown or immutable paths are InvalidArgument naming update_mask, and nothing is written', async () => {
    const { user } = await createAccount(admin.admin);
    const before = await userRow(server, user.id);
    for (const paths of [['password'], ['id'], ['create_time'], ['last_login_time'], ['email', 'nonsense']]) {
      const err = await expectConnectError(
        admin.admin.updateUser({ user: { id: user.id, email: `x-${randomHex()}@example.com` }, updateMask: { paths } }),
        Code.InvalidArgument,
      );
      expect(violatedFields(err), paths.join(',')).toContain('update_mask');
    }
    expect(await userRow(server, user.id)).toEqual(before);
  });

  test('bad values are InvalidArgument naming user.<field>; a taken name is AlreadyExists; an unknown id is NotFound', async () => {
    const { user } = await createAccount(admin.admin);
    const other = await createAccount(admin.admin);
    const before = await userRow(server, user.id);

    const bad = await expectConnectError(
      admin.admin.updateUser({
        user: { id: user.id, username: 'x', email: 'nope', role: Role.UNSPECIFIED },
        updateMask: { paths: ['username', 'email', 'role'] },
      }),
      Code.InvalidArgument,
    );
    expect(new Set(violatedFields(bad))).toEqual(new Set(['user.username', 'user.email', 'user.role']));

    const takenName = await expectConnectError(
      admin.admin.updateUser({ user: { id: user.id, username: other.user.username }, updateMask: { paths: ['username'] } }),
      Code.AlreadyExists,
    );
    expect(violatedFields(takenName)).toEqual(['user.username']);
    const takenEmail = await expectConnectError(
      admin.admin.updateUser({ user: { id: user.id, email: other.user.email.toUpperCase() }, updateMask: { paths: ['email'] } }),
      Code.AlreadyExists,
    );
    expect(violatedFields(takenEmail)).toEqual(['user.email']);
    expect(await userRow(server, user.id)).toEqual(before);

    // Its own current values are not "taken".
    await admin.admin.updateUser({
      user: { id: user.id, username: user.username, email: user.email },
      updateMask: { paths: ['username', 'email'] },
    });

    await expectConnectError(
      admin.admin.updateUser({ user: { id: unknownUuid, active: false }, updateMask: { paths: ['active'] } }),
      Code.NotFound,
    );
    for (const id of ['', 'nope']) {
      const err = await expectConnectError(
        admin.admin.updateUser({ user: { id, active: false }, updateMask: { paths: ['active'] } }),
        Code.InvalidArgument,
      );
      expect(violatedFields(err)).toEqual(['user.id']);
    }
    const noUser = await expectConnectError(admin.admin.updateUser({ updateMask: { paths: ['active'] } }), Code.InvalidArgument);
    expect(violatedFields(noUser)).toEqual(['user.id']);
  });

  test('deactivation ends every session at once, stops API keys and sign-in; reactivation allows sign-in again', async () => {
    const account = await createAccount(admin.admin);
    const first = await server.signIn(account.user.username, account.password);
    const second = await server.signIn(account.user.username, account.password);
    const { secret } = await first.auth.createApiKey({ name: 'before-deactivation' });
    const accessTokens = [first.tokens!.accessToken, second.tokens!.accessToken];
    const refreshToken = second.tokens!.refreshToken;
    for (const token of accessTokens) await server.bearerClient(token).auth.getMe({});

    const { user } = await admin.admin.updateUser({ user: { id: account.user.id, active: false }, updateMask: { paths: ['active'] } });
    expect(user!.active).toBe(false);

    for (const token of accessTokens) {
      await expectConnectError(server.bearerClient(token).auth.getMe({}), Code.Unauthenticated);
    }
    const byKey = await expectConnectError(server.bearerClient(secret).auth.getMe({}), Code.Unauthenticated);
    expect(reasonOf(byKey)).toBe('ACCOUNT_DISABLED');
    await expectConnectError(server.client().auth.refresh({ refreshToken }), Code.Unauthenticated);
    const login = await expectConnectError(server.client().login(account.user.username, account.password), Code.Unauthenticated);
    expect(reasonOf(login)).toBe('ACCOUNT_DISABLED');

    const sessions = await server.query<{ revoked_at: Date | null; revoke_reason: string | null }>(
      'select revoked_at, revoke_reason from sessions where user_id = $1',
      [account.user.id],
    );
    expect(sessions).toHaveLength(2);
    for (const session of sessions) {
      expect(session.revoked_at).not.toBeNull();
      expect(session.revoke_reason).toBe('account_deactivated');
    }
    expect(await userRow(server, account.user.id)).toMatchObject({ active: false });

    await admin.admin.updateUser({ user: { id: account.user.id, active: true }, updateMask: { paths: ['active'] } });
    // Ended sessions stay ended; a new sign-in works.
    await expectConnectError(server.bearerClient(accessTokens[0]!).auth.getMe({}), Code.Unauthenticated);
    const back = await server.signIn(account.user.username, account.password);
    expect((await back.auth.getMe({})).user!.active).toBe(true);
  });

  test("a role change applies at once to the account's existing access token", async () => {
    const account = await server.createUser({ role: Role.USER });
    const token = account.client.tokens!.accessToken;
    const sameToken = server.bearerClient(token);
    await expectConnectError(sameToken.admin.listUsers({}), Code.PermissionDenied);

    await admin.admin.updateUser({ user: { id: account.user.id, role: Role.ADMIN }, updateMask: { paths: ['role'] } });
    const listed = await sameToken.admin.listUsers({ query: account.user.username });
    expect(listed.users.map((u) => u.id)).toEqual([account.user.id]);
    expect((await sameToken.auth.getMe({})).user!.role).toBe(Role.ADMIN);

    await admin.admin.updateUser({ user: { id: account.user.id, role: Role.WORKER }, updateMask: { paths: ['role'] } });
    await expectConnectError(sameToken.admin.listUsers({}), Code.PermissionDenied);
    expect(account.client.tokens!.accessToken).toBe(token);
  });

  test('is audited with user.id as target, successes and failures alike', async () => {
    const { user } = await createAccount(admin.admin);
    const ok = requestId('update-ok');
    const bad = requestId('update-bad');
    await admin.admin.updateUser({ user: { id: user.id, active: false }, updateMask: { paths: ['active'] } }, withRequestId(ok));
    await expectConnectError(
      admin.admin.updateUser({ user: { id: user.id }, updateMask: { paths: ['password'] } }, withRequestId(bad)),
      Code.InvalidArgument,
    );
    expect(await auditRowsByRequestId(server, ok)).toEqual([
      expect.objectContaining({ action: `${service}.UpdateUser`, target: user.id, outcome: 'success', actor_id: adminUser.id }),
    ]);
    expect(await auditRowsByRequestId(server, bad)).toEqual([
      expect.objectContaining({ action: `${service}.UpdateUser`, target: user.id, outcome: 'failure', error_code: 'invalid_argument' }),
    ]);
  });
});

// ---------------------------------------------------------------------------------------
// DeleteUser
// ---------------------------------------------------------------------------------------

describe('DeleteUser', () => {
  test('confirm must equal the username: otherwise InvalidArgument naming confirm, and nothing is deleted', async () => {
    const { user } = await createAccount(admin.admin);
    for (const confirm of ['', user.username.toUpperCase(), `${user.username} `, user.email, user.id]) {
      const err = await expectConnectError(admin.admin.deleteUser({ id: user.id, confirm }), Code.InvalidArgument);
      expect(violatedFields(err), confirm).toEqual(['confirm']);
    }
    expect(await userRow(server, user.id)).toBeDefined();
  });

  test('deletes the account with its sessions, refresh tokens and API keys; its credentials stop working', async () => {
    const account = await createAccount(admin.admin);
    const first = await server.signIn(account.user.username, account.password);
    const second = await server.signIn(account.user.username, account.password);
    const { secret } = await first.auth.createApiKey({ name: 'doomed' });
    await second.auth.createApiKey({ name: 'doomed-too' });
    const id = account.user.id;
    expect(await server.countRows('select count(*) as n from sessions where user_id = $1', [id])).toBe(2);
    expect(await server.countRows('select count(*) as n from api_keys where user_id = $1', [id])).toBe(2);

    const rid = requestId('delete');
    await admin.admin.deleteUser({ id, confirm: account.user.username }, withRequestId(rid));

    expect(await userRow(server, id)).toBeUndefined();
    expect(await server.countRows('select count(*) as n from sessions where user_id = $1', [id])).toBe(0);
    expect(await server.countRows('select count(*) as n from api_keys where user_id = $1', [id])).toBe(0);
    expect(
      await server.countRows(
        'select count(*) as n from refresh_tokens r where not exists (select 1 from sessions s where s.id = r.session_id)',
      ),
    ).toBe(0);

    await expectConnectError(server.bearerClient(first.tokens!.accessToken).auth.getMe({}), Code.Unauthenticated);
    await expectConnectError(server.bearerClient(secret).auth.getMe({}), Code.Unauthenticated);
    await expectConnectError(server.client().auth.refresh({ refreshToken: second.tokens!.refreshToken }), Code.Unauthenticated);
    await expectConnectError(admin.admin.getUser({ id }), Code.NotFound);
    await expectConnectError(admin.admin.deleteUser({ id, confirm: account.user.username }), Code.NotFound);

    expect(await auditRowsByRequestId(server, rid)).toEqual([
      expect.objectContaining({ action: `${service}.DeleteUser`, target: id, outcome: 'success', actor_username: 'admin' }),
    ]);
    // The name is free again.
    await createAccount(admin.admin, { username: account.user.username });
  });

  test('an admin cannot delete its own account (FailedPrecondition), even with other admins around', async () => {
    await createAccount(admin.admin, { role: Role.ADMIN });
    const err = await expectConnectError(admin.admin.deleteUser({ id: adminUser.id, confirm: 'admin' }), Code.FailedPrecondition);
    expect(reasonOf(err)).toBe('SELF_DELETE');
    expect(await userRow(server, adminUser.id)).toMatchObject({ role: 'admin', active: true });
    await admin.auth.getMe({});
  });

  test('an unknown id is NotFound; a bad id is InvalidArgument naming id', async () => {
    await expectConnectError(admin.admin.deleteUser({ id: unknownUuid, confirm: 'whoever' }), Code.NotFound);
    const err = await expectConnectError(admin.admin.deleteUser({ id: 'nope', confirm: 'nope' }), Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(['id']);
  });
});

// ---------------------------------------------------------------------------------------
// ResetUserPassword
// ---------------------------------------------------------------------------------------

describe('ResetUserPassword', () => {
  test('a generated password is returned and works, the old one does not, and every session and API key ends', async () => {
    const account = await createAccount(admin.admin);
    const first = await server.signIn(account.user.username, account.password);
    const second = await server.signIn(account.user.username, account.password);
    const { secret } = await first.auth.createApiKey({ name: 'made before the reset' });
    const oldHash = (await userRow(server, account.user.id))!.password_hash;

    const rid = requestId('reset');
    const reset = await admin.admin.resetUserPassword({ id: account.user.id }, withRequestId(rid));
    expect(reset.user!.id).toBe(account.user.id);
    expect(reset.generatedPassword.length).toBeGreaterThanOrEqual(12);
    expect(reset.generatedPassword).not.toBe(account.password);

    for (const client of [first, second]) {
      await expectConnectError(server.bearerClient(client.tokens!.accessToken).auth.getMe({}), Code.Unauthenticated);
      await expectConnectError(server.client().auth.refresh({ refreshToken: client.tokens!.refreshToken }), Code.Unauthenticated);
    }
    const sessions = await server.query<{ revoked_at: Date | null; revoke_reason: string | null }>(
      'select revoked_at, revoke_reason from sessions where user_id = $1',
      [account.user.id],
    );
    expect(sessions).toHaveLength(2);
    expect(sessions.every((s) => s.revoked_at !== null && s.revoke_reason === 'password_reset')).toBe(true);

    const old = await expectConnectError(server.client().login(account.user.username, account.password), Code.Unauthenticated);
    expect(reasonOf(old)).toBe('INVALID_CREDENTIALS');
    await expectConnectError(server.bearerClient(secret).auth.getMe({}), Code.Unauthenticated, 'API_KEY_INVALID');
    const fresh = await server.signIn(account.user.username, reset.generatedPassword);
    expect((await fresh.auth.getMe({})).user!.id).toBe(account.user.id);

    const row = (await userRow(server, account.user.id))!;
    expect(row.password_hash).not.toBe(oldHash);
    expect(row.password_hash).toMatch(/^\$argon2id\$/);
    // Neither the audit log nor anything else keeps the password.
    const audit = await auditRowsByRequestId(server, rid);
    expect(audit).toEqual([
      expect.objectContaining({ action: `${service}.ResetUserPassword`, target: account.user.id, outcome: 'success' }),
    ]);
    expect(JSON.stringify(await server.query('select * from audit_events'))).not.toContain(reset.generatedPassword);
  });

  test('a given password is used (nothing generated); one that is too short is InvalidArgument naming new_password and changes nothing', async () => {
    const account = await createAccount(admin.admin);
    const session = await server.signIn(account.user.username, account.password);
    const before = await userRow(server, account.user.id);

    const err = await expectConnectError(
      admin.admin.resetUserPassword({ id: account.user.id, newPassword: 'too-short' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(err)).toEqual(['new_password']);
    expect(await userRow(server, account.user.id)).toEqual(before);
    await server.bearerClient(session.tokens!.accessToken).auth.getMe({});
    await server.signIn(account.user.username, account.password);

    const chosen = `chosen-${randomHex(8)}`;
    const reset = await admin.admin.resetUserPassword({ id: account.user.id, newPassword: chosen });
    expect(reset.generatedPassword).toBe('');
    await server.signIn(account.user.username, chosen);
    await expectConnectError(server.bearerClient(session.tokens!.accessToken).auth.getMe({}), Code.Unauthenticated);
  });

  test('an unknown id is NotFound; a bad id is InvalidArgument naming id', async () => {
    await expectConnectError(admin.admin.resetUserPassword({ id: unknownUuid }), Code.NotFound);
    const err = await expectConnectError(
      admin.admin.resetUserPassword({ id: 'nope', newPassword: 'a-long-enough-password' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(err)).toEqual(['id']);
  });

  test('a generated password satisfies a raised auth.password_min_length', async () => {
    const account = await createAccount(admin.admin);
    await server.setSetting('auth.password_min_length', 40);
    try {
      const reset = await admin.admin.resetUserPassword({ id: account.user.id });
      expect(reset.generatedPassword.length).toBeGreaterThanOrEqual(40);
      await server.signIn(account.user.username, reset.generatedPassword);
    } finally {
      await server.setSetting('auth.password_min_length', null);
    }
  });
});

// ---------------------------------------------------------------------------------------
// UpdateUser / DeleteUser: the last active admin (a server of its own, with one admin)
// ---------------------------------------------------------------------------------------

describe('the last active admin', () => {
  let solo: TestServer;
  let soloAdmin: YardmasterClient;
  let soloAdminId: string;

  beforeAll(async () => {
    solo = await startTestServer();
    soloAdmin = await solo.adminClient();
    soloAdminId = (await soloAdmin.auth.getMe({})).user!.id;
  });
  afterAll(() => solo?.close());

  const activeAdmins = () => solo.countRows("select count(*) as n from users where role = 'admin' and active");

  test('cannot be demoted, deactivated or deleted until another active admin exists', async () => {
    const before = await userRow(solo, soloAdminId);
    for (const [user, paths] of [
      [{ id: soloAdminId, role: Role.USER }, ['role']],
      [{ id: soloAdminId, role: Role.WORKER }, ['role']],
      [{ id: soloAdminId, active: false }, ['active']],
      [{ id: soloAdminId, role: Role.ADMIN, active: false }, ['role', 'active']],
    ] as const) {
      const rid = requestId('last-admin');
      const err = await expectConnectError(
        soloAdmin.admin.updateUser({ user, updateMask: { paths: [...paths] } }, withRequestId(rid)),
        Code.FailedPrecondition,
      );
      expect(reasonOf(err), paths.join(',')).toBe('LAST_ADMIN');
      expect(await auditRowsByRequestId(solo, rid)).toEqual([
        expect.objectContaining({ outcome: 'failure', error_code: 'failed_precondition', reason: 'LAST_ADMIN', target: soloAdminId }),
      ]);
    }
    await expectConnectError(soloAdmin.admin.deleteUser({ id: soloAdminId, confirm: 'admin' }), Code.FailedPrecondition);
    expect(await userRow(solo, soloAdminId)).toEqual(before);

    // Changes that keep it an active admin are fine.
    const { user } = await soloAdmin.admin.updateUser({
      user: { id: soloAdminId, role: Role.ADMIN, active: true, email: 'root@example.com' },
      updateMask: { paths: ['role', 'active', 'email'] },
    });
    expect(user).toMatchObject({ role: Role.ADMIN, active: true, email: 'root@example.com' });

    // An inactive admin does not count.
    const dormant = await createAccount(soloAdmin.admin, { role: Role.ADMIN, username: 'dormant-admin' });
    await soloAdmin.admin.updateUser({ user: { id: dormant.user.id, active: false }, updateMask: { paths: ['active'] } });
    expect(
      reasonOf(
        await expectConnectError(
          soloAdmin.admin.updateUser({ user: { id: soloAdminId, role: Role.USER }, updateMask: { paths: ['role'] } }),
          Code.FailedPrecondition,
        ),
      ),
    ).toBe('LAST_ADMIN');
    expect(await activeAdmins()).toBe(1);

    // Once another admin is active, the first one can be demoted, by the other admin or by itself.
    await soloAdmin.admin.updateUser({ user: { id: dormant.user.id, active: true }, updateMask: { paths: ['active'] } });
    const other = await solo.signIn(dormant.user.username, dormant.password);
    const { user: demoted } = await soloAdmin.admin.updateUser({
      user: { id: soloAdminId, role: Role.USER },
      updateMask: { paths: ['role'] },
    });
    expect(demoted!.role).toBe(Role.USER);
    expect(await userRow(solo, soloAdminId)).toMatchObject({ role: 'user', active: true });
    await expectConnectError(soloAdmin.admin.listUsers({}), Code.PermissionDenied);

    // Now the other one is the last: it cannot deactivate or demote itself.
    expect(
      reasonOf(
        await expectConnectError(
          other.admin.updateUser({ user: { id: dormant.user.id, active: false }, updateMask: { paths: ['active'] } }),
          Code.FailedPrecondition,
        ),
      ),
    ).toBe('LAST_ADMIN');
    expect(
      reasonOf(
        await expectConnectError(
          other.admin.updateUser({ user: { id: dormant.user.id, role: Role.USER }, updateMask: { paths: ['role'] } }),
          Code.FailedPrecondition,
        ),
      ),
    ).toBe('LAST_ADMIN');
    expect(await activeAdmins()).toBe(1);

    // Promote the first one back, then it may deactivate the other.
    await other.admin.updateUser({ user: { id: soloAdminId, role: Role.ADMIN }, updateMask: { paths: ['role'] } });
    await soloAdmin.admin.listUsers({});
    await soloAdmin.admin.updateUser({ user: { id: dormant.user.id, active: false }, updateMask: { paths: ['active'] } });
    await expectConnectError(other.admin.listUsers({}), Code.Unauthenticated);
    expect(await activeAdmins()).toBe(1);
  });

  test('an admin may delete another admin, active or not, but never itself', async () => {
    const second = await createAccount(soloAdmin.admin, { role: Role.ADMIN, username: 'second-admin' });
    const third = await createAccount(soloAdmin.admin, { role: Role.ADMIN, username: 'third-admin' });
    await soloAdmin.admin.updateUser({ user: { id: third.user.id, active: false }, updateMask: { paths: ['active'] } });
    const secondClient = await solo.signIn(second.user.username, second.password);

    await soloAdmin.admin.deleteUser({ id: third.user.id, confirm: third.user.username });
    expect(await userRow(solo, third.user.id)).toBeUndefined();

    const self = await expectConnectError(
      secondClient.admin.deleteUser({ id: second.user.id, confirm: second.user.username }),
      Code.FailedPrecondition,
    );
    expect(reasonOf(self)).toBe('SELF_DELETE');

    await secondClient.admin.deleteUser({ id: soloAdminId, confirm: 'admin' });
    expect(await userRow(solo, soloAdminId)).toBeUndefined();
    await expectConnectError(soloAdmin.admin.listUsers({}), Code.Unauthenticated);
    expect(await activeAdmins()).toBe(1);
    // The survivor is the last admin and still cannot leave.
    await expectConnectError(secondClient.admin.deleteUser({ id: second.user.id, confirm: second.user.username }), Code.FailedPrecondition);
    expect(
      reasonOf(
        await expectConnectError(
          secondClient.admin.updateUser({ user: { id: second.user.id, active: false }, updateMask: { paths: ['active'] } }),
          Code.FailedPrecondition,
        ),
      ),
    ).toBe('LAST_ADMIN');
  });
});
