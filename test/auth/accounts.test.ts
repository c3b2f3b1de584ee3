/**
 * AuthService Register, GetMe, ChangePassword and GetMyPermissions.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { AdminService } from '../../gen/yardmaster/v1/admin_pb.ts';
import { AuthService } from '../../gen/yardmaster/v1/auth_pb.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { expectConnectError, uniqueName, violatedFields } from '../support/assertions.ts';
import { method, server, admin, setSetting, sessionCount, userCount, currentSessionId, useAuthServer } from './support.ts';

useAuthServer();

describe('Register', () => {
  const password = 'a-long-enough-password';

  test('is PermissionDenied (REGISTRATION_CLOSED) by default and creates nothing', async () => {
    const username = uniqueName('reg');
    const usersBefore = await userCount();
    await expectConnectError(
      server.client().auth.register({ username, email: `${username}@example.com`, password }),
      Code.PermissionDenied,
      'REGISTRATION_CLOSED',
    );
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

    const [row] = await server.query<{ role: string; password_hash: string }>('select role, password_hash from users where id = $1', [
      reply.user!.id,
    ]);
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
    const short = await expectConnectError(
      server.client().auth.register({ username, email: `${username}@example.com`, password: 'elevenchars' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(short)).toEqual(['password']);

    const overlong = await expectConnectError(
      server.client().auth.register({ username, email: `${username}@example.com`, password: 'p'.repeat(1025) }),
      Code.InvalidArgument,
    );
    expect(violatedFields(overlong)).toEqual(['password']);

    await setSetting('auth.password_min_length', 24);
    const underRaisedMinimum = await expectConnectError(
      server.client().auth.register({ username, email: `${username}@example.com`, password }),
      Code.InvalidArgument,
    );
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
    const allBad = await expectConnectError(
      server.client().auth.register({ username: 'a!', email: 'nope', password: 'short' }),
      Code.InvalidArgument,
    );
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
    await expectConnectError(
      server.authClient({ authorization: 'Basic dXNlcjpwYXNz' }).getMe({}),
      Code.Unauthenticated,
      'CREDENTIALS_MALFORMED',
    );
    await expectConnectError(server.bearerAuthClient('not-a-jwt').getMe({}), Code.Unauthenticated);
    const { client } = await server.createUser();
    const [header, payload] = client.tokens!.accessToken.split('.');
    await expectConnectError(server.bearerAuthClient(`${header}.${payload}.${'A'.repeat(86)}`).getMe({}), Code.Unauthenticated);
    await expectConnectError(
      server.bearerAuthClient(`ym_${randomBytes(32).toString('base64url')}`).getMe({}),
      Code.Unauthenticated,
      'API_KEY_INVALID',
    );
  });
});

describe('ChangePassword', () => {
  const newPassword = 'a-brand-new-password';

  test('a wrong current password is InvalidArgument on current_password and changes nothing', async () => {
    const user = await server.createUser();
    const other = (await server.signIn(user.user.username, user.password)).tokens!;
    const [before] = await server.query<{ password_hash: string }>('select password_hash from users where id = $1', [user.user.id]);
    const error = await expectConnectError(
      user.client.auth.changePassword({ currentPassword: 'not-the-password', newPassword }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['current_password']);

    const [after] = await server.query<{ password_hash: string }>('select password_hash from users where id = $1', [user.user.id]);
    expect(after!.password_hash).toBe(before!.password_hash);
    expect((await server.bearerAuthClient(other.accessToken).getMe({})).user?.id).toBe(user.user.id);
    await server.client().auth.login({ username: user.user.username, password: user.password });
  });

  test('an empty current password and a too-short new one are InvalidArgument naming both fields', async () => {
    const user = await server.createUser();
    const error = await expectConnectError(
      user.client.auth.changePassword({ currentPassword: '', newPassword: 'short' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['current_password', 'new_password']);
    const tooShort = await expectConnectError(
      user.client.auth.changePassword({ currentPassword: user.password, newPassword: 'short' }),
      Code.InvalidArgument,
    );
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
    await expectConnectError(
      server.client().auth.login({ username: user.user.username, password: user.password }),
      Code.Unauthenticated,
      'INVALID_CREDENTIALS',
    );
    expect((await server.client().auth.login({ username: user.user.username, password: newPassword })).user?.id).toBe(user.user.id);
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
