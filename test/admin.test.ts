/**
 * AdminService over a real server and a real PostgreSQL database: access rules, user
 * administration, runtime settings, the audit log, metrics and signing-key rotation.
 * Every failure is checked by its Connect code and details, and by what was (not)
 * written in the database.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, ConnectError, type CallOptions } from '@connectrpc/connect';
import { fromJson, toJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate, ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import { AdminService, AuditOutcome, SettingType, type AuditEvent, type ListAuditEventsRequest, type ListUsersRequest } from '../gen/yardmaster/v1/admin_pb.ts';
import { Role, type User } from '../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { eventually, expectConnectError, randomHex, reasonOf, violatedFields } from './support/assertions.ts';
import { adminPassword, startTestServer, type TestServer } from './support/test-server.ts';
import { createTestDatabase, type TestDatabase } from './support/test-database.ts';

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

type AdminClient = YardmasterClient['admin'];
type ListUsersInit = Partial<Omit<ListUsersRequest, '$typeName'>>;
type ListAuditInit = Partial<Omit<ListAuditEventsRequest, '$typeName' | 'startTime' | 'endTime'>> & {
  startTime?: ReturnType<typeof timestampFromDate>;
  endTime?: ReturnType<typeof timestampFromDate>;
};

const service = 'yardmaster.v1.AdminService';
const unknownUuid = '01900000-0000-7000-8000-000000000000';

function requestId(label: string): string {
  return `${label}-${randomHex(6)}`;
}

function withRequestId(id: string): CallOptions {
  return { headers: { 'x-request-id': id } };
}

function jsonValue(value: JsonValue): Value {
  return fromJson(ValueSchema, value);
}

function plain(value: Value | undefined): JsonValue | undefined {
  return value === undefined ? undefined : toJson(ValueSchema, value);
}

/** The protected header of a JWT. */
function jwtHeader(token: string): { alg: string; kid: string; typ?: string } {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { alg: string; kid: string };
}

interface Account {
  user: User;
  password: string;
}

async function createAccount(admin: AdminClient, options: { username?: string; email?: string; role?: Role; password?: string } = {}): Promise<Account> {
  const username = options.username ?? `acct-${randomHex()}`;
  const password = options.password ?? `password-of-${username}`;
  const { user } = await admin.createUser({
    username,
    email: options.email ?? `${username}@example.com`,
    password,
    role: options.role ?? Role.USER,
  });
  return { user: user!, password };
}

interface UserRow {
  id: string;
  username: string;
  email: string;
  role: string;
  active: boolean;
  password_hash: string;
  created_at: Date;
  updated_at: Date;
}

async function userRow(server: TestServer, id: string): Promise<UserRow | undefined> {
  const [row] = await server.query<UserRow>('select id, username, email, role, active, password_hash, created_at, updated_at from users where id = $1', [id]);
  return row;
}

interface AuditRow {
  id: string;
  actor_id: string | null;
  actor_username: string | null;
  action: string;
  target: string | null;
  client_address: string;
  request_id: string;
  outcome: string;
  error_code: string | null;
  reason: string | null;
}

function auditRowsByRequestId(server: TestServer, id: string): Promise<AuditRow[]> {
  return server.query<AuditRow>('select * from audit_events where request_id = $1', [id]);
}

/** Every user the filter yields, page by page, checking each page's size. */
async function allUserPages(admin: AdminClient, request: ListUsersInit, pageSize: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await admin.listUsers({ ...request, pageSize, pageToken });
    pages++;
    expect(page.users.length).toBeLessThanOrEqual(pageSize);
    if (page.nextPageToken !== '') expect(page.users.length).toBe(pageSize);
    ids.push(...page.users.map((user) => user.id));
    pageToken = page.nextPageToken;
    expect(pages).toBeLessThan(1000);
  } while (pageToken !== '');
  return { ids, pages };
}

async function allAuditPages(admin: AdminClient, request: ListAuditInit, pageSize: number): Promise<{ events: AuditEvent[]; pages: number }> {
  const events: AuditEvent[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await admin.listAuditEvents({ ...request, pageSize, pageToken });
    pages++;
    expect(page.auditEvents.length).toBeLessThanOrEqual(pageSize);
    events.push(...page.auditEvents);
    pageToken = page.nextPageToken;
    expect(pages).toBeLessThan(1000);
  } while (pageToken !== '');
  return { events, pages };
}

async function jwks(server: TestServer): Promise<{ keys: Record<string, unknown>[] }> {
  const response = await fetch(`${server.url}/.well-known/jwks.json`);
  expect(response.status).toBe(200);
  return (await response.json()) as { keys: Record<string, unknown>[] };
}

// ---------------------------------------------------------------------------------------
// The shared server: most tests run here, on accounts of their own.
// ---------------------------------------------------------------------------------------

let server: TestServer;
let admin: YardmasterClient;
let adminUser: User;

beforeAll(async () => {
  server = await startTestServer();
  admin = await server.adminClient();
  adminUser = (await admin.auth.getMe({})).user!;
});
afterAll(() => server?.close());

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
    calls = [
      { method: 'ListUsers', audited: false, call: (c, o) => c.listUsers({}, o) },
      { method: 'GetUser', audited: false, call: (c, o) => c.getUser({ id: victimId }, o) },
      {
        method: 'CreateUser',
        audited: true,
        target: 'intruder-made',
        call: (c, o) => c.createUser({ username: 'intruder-made', email: 'intruder-made@example.com', password: 'a-long-enough-password', role: Role.ADMIN }, o),
      },
      {
        method: 'UpdateUser',
        audited: true,
        target: victimId,
        call: (c, o) => c.updateUser({ user: { id: victimId, role: Role.ADMIN }, updateMask: { paths: ['role'] } }, o),
      },
      { method: 'DeleteUser', audited: true, target: victimId, call: (c, o) => c.deleteUser({ id: victimId, confirm: victim.user.username }, o) },
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
    };
  }

  test('the table of calls covers every AdminService method', () => {
    expect(calls.map((c) => c.method).sort()).toEqual(AdminService.methods.map((m) => m.name).sort());
    // Audited exactly where the contract says so.
    const audited = ['CreateUser', 'UpdateUser', 'DeleteUser', 'ResetUserPassword', 'ClearSignInThrottle', 'UpdateSetting', 'RotateSigningKey'];
    expect(calls.filter((c) => c.audited).map((c) => c.method).sort()).toEqual(audited.sort());
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
      expect(auditEvents.map((e) => e.action).sort()).toEqual(calls.filter((c) => c.audited).map((c) => `${service}.${c.method}`).sort());
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
    await expectConnectError(byKey.admin.createUser({ username: `k-${randomHex()}`, email: `k-${randomHex()}@example.com`, password: 'a-long-enough-password', role: Role.ADMIN }), Code.PermissionDenied);
  });

  test('a malformed or forged bearer credential is Unauthenticated', async () => {
    for (const bearer of ['not-a-jwt', 'ym_not-a-real-key', `${admin.tokens!.accessToken.slice(0, -4)}AAAA`]) {
      await expectConnectError(server.bearerClient(bearer).admin.listUsers({}), Code.Unauthenticated);
    }
  });

  test('a call with invalid credentials to an audited method is recorded as FAILURE (AUDIT_MODE_ALL: every call)', async () => {
    const rid = requestId('forged-create');
    await expectConnectError(
      server.bearerClient('not-a-jwt').admin.createUser({ username: `forged-${randomHex()}`, email: `forged-${randomHex()}@example.com`, password: 'a-long-enough-password', role: Role.ADMIN }, withRequestId(rid)),
      Code.Unauthenticated,
    );
    const rows = await auditRowsByRequestId(server, rid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: `${service}.CreateUser`, outcome: 'failure', error_code: 'unauthenticated', actor_id: null });
  });
});

// ---------------------------------------------------------------------------------------
// ListUsers
// ---------------------------------------------------------------------------------------

describe('ListUsers', () => {
  const prefix = `lu${randomHex(3)}`;
  /** The fixture, in creation order. */
  const fixture: Record<string, User> = {};
  let mailOnly: User;
  let createdOrder: string[];
  let byUsername: string[];

  beforeAll(async () => {
    // Created out of alphabetical order, so that the orderings differ.
    for (const [name, role] of [
      ['delta', Role.USER],
      ['alpha', Role.WORKER],
      ['charlie', Role.ADMIN],
      ['bravo', Role.USER],
      ['echo', Role.USER],
    ] as const) {
      fixture[name] = (await createAccount(admin.admin, { username: `${prefix}-${name}`, role })).user;
    }
    // Matches the query only by its e-mail address.
    mailOnly = (await createAccount(admin.admin, { username: `mail${randomHex(3)}`, email: `${prefix}.mail@example.org` })).user;
    await admin.admin.updateUser({ user: { id: fixture['bravo']!.id, active: false }, updateMask: { paths: ['active'] } });
    createdOrder = [...['delta', 'alpha', 'charlie', 'bravo', 'echo'].map((n) => fixture[n]!.id), mailOnly.id];
    byUsername = [...['alpha', 'bravo', 'charlie', 'delta', 'echo'].map((n) => fixture[n]!.id), mailOnly.id];
  });

  const ids = (users: User[]) => users.map((u) => u.id);

  test('query matches a substring of the username or the e-mail, case-insensitively', async () => {
    const all = await admin.admin.listUsers({ query: prefix });
    expect(new Set(ids(all.users))).toEqual(new Set(createdOrder));
    expect(all.nextPageToken).toBe('');

    const upper = await admin.admin.listUsers({ query: prefix.toUpperCase() });
    expect(new Set(ids(upper.users))).toEqual(new Set(createdOrder));

    const alpha = await admin.admin.listUsers({ query: `${prefix}-alph` });
    expect(ids(alpha.users)).toEqual([fixture['alpha']!.id]);

    const byMail = await admin.admin.listUsers({ query: `${prefix}.mail@` });
    expect(ids(byMail.users)).toEqual([mailOnly.id]);

    const nothing = await admin.admin.listUsers({ query: `${prefix}-zulu` });
    expect(nothing.users).toEqual([]);
    expect(nothing.nextPageToken).toBe('');
  });

  test('LIKE wildcards in query are taken literally', async () => {
    // Unescaped, "_" would match the "-" after the prefix and "%" anything at all.
    expect((await admin.admin.listUsers({ query: `${prefix}_` })).users).toEqual([]);
    expect((await admin.admin.listUsers({ query: `${prefix}%` })).users).toEqual([]);
    expect((await admin.admin.listUsers({ query: '%' })).users).toEqual([]);
  });

  test('role and active filter, alone and together', async () => {
    const workers = await admin.admin.listUsers({ query: prefix, role: Role.WORKER });
    expect(ids(workers.users)).toEqual([fixture['alpha']!.id]);
    expect(workers.users[0]!.role).toBe(Role.WORKER);

    const admins = await admin.admin.listUsers({ query: prefix, role: Role.ADMIN });
    expect(ids(admins.users)).toEqual([fixture['charlie']!.id]);

    const users = await admin.admin.listUsers({ query: prefix, role: Role.USER });
    expect(new Set(ids(users.users))).toEqual(new Set([fixture['delta']!.id, fixture['bravo']!.id, fixture['echo']!.id, mailOnly.id]));

    const inactive = await admin.admin.listUsers({ query: prefix, active: false });
    expect(ids(inactive.users)).toEqual([fixture['bravo']!.id]);
    expect(inactive.users[0]!.active).toBe(false);

    const active = await admin.admin.listUsers({ query: prefix, active: true });
    expect(new Set(ids(active.users))).toEqual(new Set(createdOrder.filter((id) => id !== fixture['bravo']!.id)));
    expect(active.users.every((u) => u.active)).toBe(true);

    const activeUsers = await admin.admin.listUsers({ query: prefix, role: Role.USER, active: true });
    expect(new Set(ids(activeUsers.users))).toEqual(new Set([fixture['delta']!.id, fixture['echo']!.id, mailOnly.id]));

    // Every role and both states when unset: the whole table.
    const everyone = await admin.admin.listUsers({ pageSize: 1000 });
    expect(everyone.users.length).toBe(await server.countRows('select count(*) as n from users'));
  });

  test('order_by: create_time desc (the default), create_time, username', async () => {
    const newestFirst = [...createdOrder].reverse();
    expect(ids((await admin.admin.listUsers({ query: prefix })).users)).toEqual(newestFirst);
    expect(ids((await admin.admin.listUsers({ query: prefix, orderBy: 'create_time desc' })).users)).toEqual(newestFirst);
    expect(ids((await admin.admin.listUsers({ query: prefix, orderBy: 'create_time' })).users)).toEqual(createdOrder);
    expect(ids((await admin.admin.listUsers({ query: prefix, orderBy: 'username' })).users)).toEqual(byUsername);

    const listed = (await admin.admin.listUsers({ query: prefix, orderBy: 'create_time' })).users;
    const times = listed.map((u) => timestampDate(u.createTime!).getTime());
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  test('an unknown order_by is InvalidArgument naming order_by', async () => {
    for (const orderBy of ['email', 'username desc', 'create_time; drop table users', 'id']) {
      const err = await expectConnectError(admin.admin.listUsers({ orderBy }), Code.InvalidArgument);
      expect(violatedFields(err), orderBy).toEqual(['order_by']);
    }
  });

  test('keyset pages visit every user exactly once, in order, for every ordering', async () => {
    for (const [orderBy, expected] of [
      ['', [...createdOrder].reverse()],
      ['create_time', createdOrder],
      ['username', byUsername],
    ] as const) {
      for (const pageSize of [1, 2, 4]) {
        const { ids: visited, pages } = await allUserPages(admin.admin, { query: prefix, orderBy }, pageSize);
        expect(visited, `order_by "${orderBy}", page_size ${pageSize}`).toEqual(expected);
        expect(pages).toBe(Math.ceil(expected.length / pageSize));
      }
    }
    // Filtered pages too.
    const { ids: users } = await allUserPages(admin.admin, { query: prefix, role: Role.USER, active: true }, 1);
    expect(new Set(users)).toEqual(new Set([fixture['delta']!.id, fixture['echo']!.id, mailOnly.id]));
    expect(users).toHaveLength(3);
  });

  test('a user created between pages does not shift the pages (keyset, not offset)', async () => {
    const first = await admin.admin.listUsers({ query: prefix, orderBy: 'create_time', pageSize: 3 });
    expect(ids(first.users)).toEqual(createdOrder.slice(0, 3));
    const late = (await createAccount(admin.admin, { username: `${prefix}-foxtrot` })).user;
    try {
      const second = await admin.admin.listUsers({ query: prefix, orderBy: 'create_time', pageSize: 3, pageToken: first.nextPageToken });
      const third = await admin.admin.listUsers({ query: prefix, orderBy: 'create_time', pageSize: 3, pageToken: second.nextPageToken });
      expect([...ids(second.users), ...ids(third.users)]).toEqual([...createdOrder.slice(3), late.id]);
    } finally {
      await admin.admin.deleteUser({ id: late.id, confirm: late.username });
    }
  });

  test('changing a filter or the order between pages is InvalidArgument naming page_token', async () => {
    const first = await admin.admin.listUsers({ query: prefix, pageSize: 2 });
    expect(first.nextPageToken).not.toBe('');
    const pageToken = first.nextPageToken;
    for (const changed of [
      { query: `${prefix}-a` },
      { query: prefix, role: Role.USER },
      { query: prefix, active: true },
      { query: prefix, orderBy: 'username' },
      {},
    ] satisfies ListUsersInit[]) {
      const err = await expectConnectError(admin.admin.listUsers({ ...changed, pageSize: 2, pageToken }), Code.InvalidArgument);
      expect(violatedFields(err), JSON.stringify(changed)).toEqual(['page_token']);
    }
    // The page size may change between pages.
    const rest = await admin.admin.listUsers({ query: prefix, pageSize: 10, pageToken });
    expect(ids(rest.users)).toEqual([...createdOrder].reverse().slice(2));
  });

  test('a page token that is not one is InvalidArgument naming page_token', async () => {
    const forged = Buffer.from(JSON.stringify({ c: 'garbage', q: 'nope' })).toString('base64url');
    for (const pageToken of ['not-a-token', forged, '!!!']) {
      const err = await expectConnectError(admin.admin.listUsers({ query: prefix, pageToken }), Code.InvalidArgument);
      expect(violatedFields(err), pageToken).toEqual(['page_token']);
    }
  });

  test('a negative page_size is InvalidArgument naming page_size', async () => {
    const err = await expectConnectError(admin.admin.listUsers({ pageSize: -1 }), Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(['page_size']);
  });
});

describe('ListUsers page size limits (on a database with 1002 users)', () => {
  let bulk: TestServer;
  let bulkAdmin: YardmasterClient;

  beforeAll(async () => {
    bulk = await startTestServer();
    bulkAdmin = await bulk.adminClient();
    // Hashing 1001 passwords through the API would take far too long: rows are inserted directly.
    await bulk.query(
      `insert into users (id, username, email, password_hash, role, active, created_at, updated_at)
       select gen_random_uuid(), 'bulk-' || lpad(i::text, 4, '0'), 'bulk-' || i || '@example.com', 'not-a-hash', 'user', true, now(), now()
         from generate_series(1, 1001) as i`,
    );
  });
  afterAll(() => bulk?.close());

  test('page_size 0 means 50, above 1000 is clamped to 1000, and the pages still cover everyone', async () => {
    const byDefault = await bulkAdmin.admin.listUsers({});
    expect(byDefault.users).toHaveLength(50);
    expect(byDefault.nextPageToken).not.toBe('');

    const clamped = await bulkAdmin.admin.listUsers({ pageSize: 5000 });
    expect(clamped.users).toHaveLength(1000);
    expect(clamped.nextPageToken).not.toBe('');
    const rest = await bulkAdmin.admin.listUsers({ pageSize: 5000, pageToken: clamped.nextPageToken });
    expect(rest.users).toHaveLength(2);
    expect(rest.nextPageToken).toBe('');
    expect(new Set([...clamped.users, ...rest.users].map((u) => u.id)).size).toBe(1002);

    const exact = await bulkAdmin.admin.listUsers({ pageSize: 1000, orderBy: 'username' });
    expect(exact.users).toHaveLength(1000);
  });
});

// ---------------------------------------------------------------------------------------
// GetUser
// ---------------------------------------------------------------------------------------

describe('GetUser', () => {
  test('returns the account', async () => {
    const { user } = await createAccount(admin.admin, { role: Role.WORKER });
    const got = (await admin.admin.getUser({ id: user.id })).user!;
    expect(got.id).toBe(user.id);
    expect(got.username).toBe(user.username);
    expect(got.email).toBe(user.email);
    expect(got.role).toBe(Role.WORKER);
    expect(got.active).toBe(true);
    expect(got.createTime).toEqual(user.createTime);
    expect(got.lastLoginTime).toBeUndefined();
  });

  test('an unknown id is NotFound', async () => {
    await expectConnectError(admin.admin.getUser({ id: unknownUuid }), Code.NotFound);
  });

  test('an id that is not a UUID, or none, is InvalidArgument naming id', async () => {
    for (const id of ['not-a-uuid', '', "1' or '1'='1", '01900000-0000-7000-8000-00000000000']) {
      const err = await expectConnectError(admin.admin.getUser({ id }), Code.InvalidArgument);
      expect(violatedFields(err), id).toEqual(['id']);
    }
  });
});

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
    const err = await expectConnectError(admin.admin.createUser({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password' }), Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(['role']);
    const unknownRole = await expectConnectError(admin.admin.createUser({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password', role: 42 as Role }), Code.InvalidArgument);
    expect(violatedFields(unknownRole)).toEqual(['role']);
    expect(await userCount()).toBe(before);
    expect(await server.countRows('select count(*) as n from users where username = $1', [name])).toBe(0);
  });

  test('several bad fields at once are one InvalidArgument naming each of them, and nothing is written', async () => {
    const before = await userCount();
    const err = await expectConnectError(admin.admin.createUser({ username: 'x', email: 'not-an-e-mail', password: 'short', role: Role.USER }), Code.InvalidArgument);
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
    const err = await expectConnectError(admin.admin.createUser({ username: 'x', email: 'not-an-e-mail', password: 'short' }), Code.InvalidArgument);
    expect(new Set(violatedFields(err))).toEqual(new Set(['username', 'email', 'password', 'role']));
    expect(await userCount()).toBe(before);
  });

  test('a taken username or e-mail (in any case) is AlreadyExists naming it, and nothing is written', async () => {
    const taken = await createAccount(admin.admin);
    const before = await userCount();

    const byName = await expectConnectError(
      admin.admin.createUser({ username: taken.user.username.toUpperCase(), email: `other-${randomHex()}@example.com`, password: 'a-long-enough-password', role: Role.USER }),
      Code.AlreadyExists,
    );
    expect(violatedFields(byName)).toEqual(['username']);

    const byEmail = await expectConnectError(
      admin.admin.createUser({ username: `other-${randomHex()}`, email: taken.user.email.toUpperCase(), password: 'a-long-enough-password', role: Role.USER }),
      Code.AlreadyExists,
    );
    expect(violatedFields(byEmail)).toEqual(['email']);

    const both = await expectConnectError(
      admin.admin.createUser({ username: taken.user.username, email: taken.user.email, password: 'a-long-enough-password', role: Role.WORKER }),
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
      [1, 2].map((i) => admin.admin.createUser({ username: name, email: `${name}-${i}@example.com`, password: 'a-long-enough-password', role: Role.USER })),
    );
    expect(attempts.filter((a) => a.status === 'fulfilled')).toHaveLength(1);
    const failure = attempts.find((a) => a.status === 'rejected') as PromiseRejectedResult;
    expect(Code[ConnectError.from(failure.reason).code]).toBe(Code[Code.AlreadyExists]);
    expect(await server.countRows('select count(*) as n from users where username = $1', [name])).toBe(1);
  });

  test('is audited with the username as target', async () => {
    const rid = requestId('create');
    const name = `audited-${randomHex()}`;
    const { user } = await admin.admin.createUser({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password', role: Role.USER }, withRequestId(rid));
    const rows = await auditRowsByRequestId(server, rid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor_id: adminUser.id, actor_username: 'admin', action: `${service}.CreateUser`, target: name, outcome: 'success', error_code: null });
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
    expect(after).toMatchObject({ username: before.username, role: 'user', active: true, email: newEmail.toLowerCase(), password_hash: before.password_hash });
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
      const err = await expectConnectError(admin.admin.updateUser({ user: { id: user.id, email: `x-${randomHex()}@example.com` }, updateMask }), Code.InvalidArgument);
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
      admin.admin.updateUser({ user: { id: user.id, username: 'x', email: 'nope', role: Role.UNSPECIFIED }, updateMask: { paths: ['username', 'email', 'role'] } }),
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
    await admin.admin.updateUser({ user: { id: user.id, username: user.username, email: user.email }, updateMask: { paths: ['username', 'email'] } });

    await expectConnectError(admin.admin.updateUser({ user: { id: unknownUuid, active: false }, updateMask: { paths: ['active'] } }), Code.NotFound);
    for (const id of ['', 'nope']) {
      const err = await expectConnectError(admin.admin.updateUser({ user: { id, active: false }, updateMask: { paths: ['active'] } }), Code.InvalidArgument);
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

    const sessions = await server.query<{ revoked_at: Date | null; revoke_reason: string | null }>('select revoked_at, revoke_reason from sessions where user_id = $1', [account.user.id]);
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
    await expectConnectError(admin.admin.updateUser({ user: { id: user.id }, updateMask: { paths: ['password'] } }, withRequestId(bad)), Code.InvalidArgument);
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
      await server.countRows('select count(*) as n from refresh_tokens r where not exists (select 1 from sessions s where s.id = r.session_id)'),
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
    const sessions = await server.query<{ revoked_at: Date | null; revoke_reason: string | null }>('select revoked_at, revoke_reason from sessions where user_id = $1', [account.user.id]);
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
    expect(audit).toEqual([expect.objectContaining({ action: `${service}.ResetUserPassword`, target: account.user.id, outcome: 'success' })]);
    expect(JSON.stringify(await server.query('select * from audit_events'))).not.toContain(reset.generatedPassword);
  });

  test('a given password is used (nothing generated); one that is too short is InvalidArgument naming new_password and changes nothing', async () => {
    const account = await createAccount(admin.admin);
    const session = await server.signIn(account.user.username, account.password);
    const before = await userRow(server, account.user.id);

    const err = await expectConnectError(admin.admin.resetUserPassword({ id: account.user.id, newPassword: 'too-short' }), Code.InvalidArgument);
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
    const err = await expectConnectError(admin.admin.resetUserPassword({ id: 'nope', newPassword: 'a-long-enough-password' }), Code.InvalidArgument);
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
      const err = await expectConnectError(soloAdmin.admin.updateUser({ user, updateMask: { paths: [...paths] } }, withRequestId(rid)), Code.FailedPrecondition);
      expect(reasonOf(err), paths.join(',')).toBe('LAST_ADMIN');
      expect(await auditRowsByRequestId(solo, rid)).toEqual([
        expect.objectContaining({ outcome: 'failure', error_code: 'failed_precondition', reason: 'LAST_ADMIN', target: soloAdminId }),
      ]);
    }
    await expectConnectError(soloAdmin.admin.deleteUser({ id: soloAdminId, confirm: 'admin' }), Code.FailedPrecondition);
    expect(await userRow(solo, soloAdminId)).toEqual(before);

    // Changes that keep it an active admin are fine.
    const { user } = await soloAdmin.admin.updateUser({ user: { id: soloAdminId, role: Role.ADMIN, active: true, email: 'root@example.com' }, updateMask: { paths: ['role', 'active', 'email'] } });
    expect(user).toMatchObject({ role: Role.ADMIN, active: true, email: 'root@example.com' });

    // An inactive admin does not count.
    const dormant = await createAccount(soloAdmin.admin, { role: Role.ADMIN, username: 'dormant-admin' });
    await soloAdmin.admin.updateUser({ user: { id: dormant.user.id, active: false }, updateMask: { paths: ['active'] } });
    expect(reasonOf(await expectConnectError(soloAdmin.admin.updateUser({ user: { id: soloAdminId, role: Role.USER }, updateMask: { paths: ['role'] } }), Code.FailedPrecondition))).toBe('LAST_ADMIN');
    expect(await activeAdmins()).toBe(1);

    // Once another admin is active, the first one can be demoted, by the other admin or by itself.
    await soloAdmin.admin.updateUser({ user: { id: dormant.user.id, active: true }, updateMask: { paths: ['active'] } });
    const other = await solo.signIn(dormant.user.username, dormant.password);
    const { user: demoted } = await soloAdmin.admin.updateUser({ user: { id: soloAdminId, role: Role.USER }, updateMask: { paths: ['role'] } });
    expect(demoted!.role).toBe(Role.USER);
    expect(await userRow(solo, soloAdminId)).toMatchObject({ role: 'user', active: true });
    await expectConnectError(soloAdmin.admin.listUsers({}), Code.PermissionDenied);

    // Now the other one is the last: it cannot deactivate or demote itself.
    expect(reasonOf(await expectConnectError(other.admin.updateUser({ user: { id: dormant.user.id, active: false }, updateMask: { paths: ['active'] } }), Code.FailedPrecondition))).toBe('LAST_ADMIN');
    expect(reasonOf(await expectConnectError(other.admin.updateUser({ user: { id: dormant.user.id, role: Role.USER }, updateMask: { paths: ['role'] } }), Code.FailedPrecondition))).toBe('LAST_ADMIN');
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

    const self = await expectConnectError(secondClient.admin.deleteUser({ id: second.user.id, confirm: second.user.username }), Code.FailedPrecondition);
    expect(reasonOf(self)).toBe('SELF_DELETE');

    await secondClient.admin.deleteUser({ id: soloAdminId, confirm: 'admin' });
    expect(await userRow(solo, soloAdminId)).toBeUndefined();
    await expectConnectError(soloAdmin.admin.listUsers({}), Code.Unauthenticated);
    expect(await activeAdmins()).toBe(1);
    // The survivor is the last admin and still cannot leave.
    await expectConnectError(secondClient.admin.deleteUser({ id: second.user.id, confirm: second.user.username }), Code.FailedPrecondition);
    expect(reasonOf(await expectConnectError(secondClient.admin.updateUser({ user: { id: second.user.id, active: false }, updateMask: { paths: ['active'] } }), Code.FailedPrecondition))).toBe('LAST_ADMIN');
  });
});

// ---------------------------------------------------------------------------------------
// Settings (a server of its own, so that the settings table starts empty)
// ---------------------------------------------------------------------------------------

describe('settings', () => {
  let fresh: TestServer;
  let freshAdmin: YardmasterClient;
  let freshAdminId: string;

  const catalog: Record<string, [SettingType, JsonValue]> = {
    'auth.account_failure_limit': [SettingType.INTEGER, 5],
    'auth.account_failure_window': [SettingType.DURATION, '15m'],
    'auth.account_throttle_max_delay': [SettingType.DURATION, '15m'],
    'auth.account_throttle_threshold': [SettingType.INTEGER, 10],
    'auth.address_failure_limit': [SettingType.INTEGER, 20],
    'auth.address_request_limit': [SettingType.INTEGER, 300],
    'auth.open_registration': [SettingType.BOOL, false],
    'auth.password_min_length': [SettingType.INTEGER, 12],
    'auth.refresh_reuse_grace': [SettingType.DURATION, '10s'],
    'files.allowed_content_types': [SettingType.STRING_LIST, []],
    'files.max_upload_bytes': [SettingType.BYTES, 5 * 1024 ** 3],
    'files.upload_expiry': [SettingType.DURATION, '1d'],
    'files.user_quota_bytes': [SettingType.BYTES, 0],
    'jobs.event_retention': [SettingType.DURATION, '7d'],
    'jobs.max_params_bytes': [SettingType.BYTES, 65536],
    'jobs.stream_heartbeat_interval': [SettingType.DURATION, '15s'],
    'limits.heavy_calls_per_account': [SettingType.INTEGER, 4],
  };

  beforeAll(async () => {
    fresh = await startTestServer();
    freshAdmin = await fresh.adminClient();
    freshAdminId = (await freshAdmin.auth.getMe({})).user!.id;
  });
  afterAll(() => fresh?.close());

  const settingRows = () => fresh.query<{ key: string; value: unknown; updated_by_id: string | null; updated_by_username: string | null; updated_at: Date }>('select * from settings order by key');

  test('ListSettings lists every setting, sorted by key, with type, value, default and description', async () => {
    const { settings } = await freshAdmin.admin.listSettings({});
    expect(settings.map((s) => s.key)).toEqual(Object.keys(catalog).sort());
    for (const setting of settings) {
      const [type, defaultValue] = catalog[setting.key]!;
      expect(setting.type, setting.key).toBe(type);
      expect(plain(setting.defaultValue), setting.key).toEqual(defaultValue);
      expect(plain(setting.value), setting.key).toEqual(defaultValue);
      expect(setting.description.length, setting.key).toBeGreaterThan(10);
      expect(setting.updatedBy, setting.key).toBe('');
      expect(setting.updateTime, setting.key).toBeUndefined();
    }
    // Ranges are part of the description.
    expect(settings.find((s) => s.key === 'auth.password_min_length')!.description).toContain('12 to 128');
  });

  test('GetSetting returns one setting; an unknown key is NotFound for GetSetting and UpdateSetting, and nothing is written', async () => {
    const { setting } = await freshAdmin.admin.getSetting({ key: 'auth.refresh_reuse_grace' });
    expect(setting).toMatchObject({ key: 'auth.refresh_reuse_grace', type: SettingType.DURATION, updatedBy: '' });
    expect(plain(setting!.value)).toBe('10s');
    for (const key of ['auth.nope', '', 'AUTH.OPEN_REGISTRATION', 'constructor', '__proto__']) {
      await expectConnectError(freshAdmin.admin.getSetting({ key }), Code.NotFound);
      await expectConnectError(freshAdmin.admin.updateSetting({ key, value: jsonValue(true) }), Code.NotFound);
    }
    expect(await settingRows()).toEqual([]);
  });

  test('UpdateSetting validates type and range: InvalidArgument naming value, and nothing is written', async () => {
    const cases: [string, JsonValue][] = [
      ['auth.open_registration', 1],
      ['auth.open_registration', 'true'],
      ['auth.open_registration', []],
      ['auth.open_registration', {}],
      ['auth.password_min_length', 11],
      ['auth.password_min_length', 129],
      ['auth.password_min_length', 12.5],
      ['auth.password_min_length', '16'],
      ['auth.password_min_length', true],
      ['auth.address_request_limit', 0],
      ['auth.refresh_reuse_grace', '10 seconds'],
      ['auth.refresh_reuse_grace', 'soon'],
      ['auth.refresh_reuse_grace', '-5s'],
      ['auth.refresh_reuse_grace', ''],
      ['auth.refresh_reuse_grace', 10],
      ['auth.refresh_reuse_grace', '2m'],
      ['auth.account_failure_window', '0s'],
      ['auth.account_throttle_max_delay', '2d'],
      ['auth.account_throttle_threshold', 0],
    ];
    for (const [key, value] of cases) {
      const rid = requestId('bad-setting');
      const err = await expectConnectError(freshAdmin.admin.updateSetting({ key, value: jsonValue(value) }, withRequestId(rid)), Code.InvalidArgument);
      expect(violatedFields(err), `${key} = ${JSON.stringify(value)}`).toEqual(['value']);
      expect(await auditRowsByRequestId(fresh, rid)).toEqual([expect.objectContaining({ outcome: 'failure', error_code: 'invalid_argument', target: key })]);
    }
    expect(await settingRows()).toEqual([]);
    for (const [key] of cases) {
      const { setting } = await freshAdmin.admin.getSetting({ key });
      expect(plain(setting!.value), key).toEqual(catalog[key]![1]);
    }
  });

  test('a valid update records the value, updated_by and update_time, and takes effect', async () => {
    const before = new Date();
    const rid = requestId('set-min-length');
    const { setting } = await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(16) }, withRequestId(rid));
    const after = new Date();
    expect(plain(setting!.value)).toBe(16);
    expect(plain(setting!.defaultValue)).toBe(12);
    expect(setting!.updatedBy).toBe('admin');
    const updateTime = timestampDate(setting!.updateTime!).getTime();
    expect(updateTime).toBeGreaterThanOrEqual(before.getTime());
    expect(updateTime).toBeLessThanOrEqual(after.getTime());

    const [row] = await settingRows();
    expect(row).toMatchObject({ key: 'auth.password_min_length', value: 16, updated_by_id: freshAdminId, updated_by_username: 'admin' });
    expect(row!.updated_at.getTime()).toBe(updateTime);
    expect((await freshAdmin.admin.getSetting({ key: 'auth.password_min_length' })).setting).toEqual(setting);
    expect(await auditRowsByRequestId(fresh, rid)).toEqual([
      expect.objectContaining({ action: `${service}.UpdateSetting`, target: 'auth.password_min_length', outcome: 'success', actor_id: freshAdminId }),
    ]);

    // It takes effect: a 15-character password is now too short, 16 is enough.
    const name = `minlen-${randomHex()}`;
    const err = await expectConnectError(freshAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password: '15-chars-passwd', role: Role.USER }), Code.InvalidArgument);
    expect(violatedFields(err)).toEqual(['password']);
    await freshAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password: '16-chars-passwrd', role: Role.USER });

    // Durations are stored in canonical form.
    const { setting: grace } = await freshAdmin.admin.updateSetting({ key: 'auth.refresh_reuse_grace', value: jsonValue('30s500ms') });
    expect(plain(grace!.value)).toBe('30s500ms');
    const { setting: window } = await freshAdmin.admin.updateSetting({ key: 'auth.account_failure_window', value: jsonValue('90m') });
    expect(plain(window!.value)).toBe('1h30m');
    expect((await fresh.query<{ value: unknown }>("select value from settings where key = 'auth.account_failure_window'"))[0]!.value).toBe('1h30m');

    // Setting it again to another value updates the same row.
    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(13) });
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.password_min_length'")).toBe(1);
    expect((await fresh.query<{ value: unknown }>("select value from settings where key = 'auth.password_min_length'"))[0]!.value).toBe(13);
  });

  test('a null (or absent) value restores the default and deletes the row', async () => {
    await freshAdmin.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(true) });
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.open_registration'")).toBe(1);

    const { setting } = await freshAdmin.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(null) });
    expect(plain(setting!.value)).toBe(false);
    expect(setting!.updatedBy).toBe('');
    expect(setting!.updateTime).toBeUndefined();
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.open_registration'")).toBe(0);
    await expectConnectError(fresh.client().auth.register({ username: `reg-${randomHex()}`, email: `reg-${randomHex()}@example.com`, password: 'a-long-enough-password' }), Code.PermissionDenied);

    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(20) });
    const { setting: absent } = await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length' });
    expect(plain(absent!.value)).toBe(12);
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.password_min_length'")).toBe(0);

    // Restoring a setting that has its default already is harmless.
    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(null) });
    expect(plain((await freshAdmin.admin.getSetting({ key: 'auth.password_min_length' })).setting!.value)).toBe(12);
  });
});

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
    const step = async (method: string, target: string, outcome: AuditOutcome, run: (options: CallOptions) => Promise<unknown>, actor = adminUser.id) => {
      const rid = requestId(method);
      script.push({ rid, action: method.includes('.') ? method : `${service}.${method}`, target, outcome, actor });
      await run(withRequestId(rid));
    };
    start = new Date();
    await step('CreateUser', name, AuditOutcome.SUCCESS, async (o) => {
      subject = (await admin.admin.createUser({ username: name, email: `${name}@example.com`, password: subjectPassword, role: Role.USER }, o)).user!;
    });
    await step('UpdateUser', '(subject)', AuditOutcome.SUCCESS, (o) => admin.admin.updateUser({ user: { id: subject.id, email: `${name}-2@example.com` }, updateMask: { paths: ['email'] } }, o));
    await step('UpdateSetting', 'auth.account_throttle_max_delay', AuditOutcome.SUCCESS, (o) => admin.admin.updateSetting({ key: 'auth.account_throttle_max_delay', value: jsonValue('20m') }, o));
    await step('UpdateUser', '(subject)', AuditOutcome.FAILURE, (o) => expectConnectError(admin.admin.updateUser({ user: { id: subject.id }, updateMask: { paths: [] } }, o), Code.InvalidArgument));
    await step('ResetUserPassword', '(subject)', AuditOutcome.SUCCESS, (o) => admin.admin.resetUserPassword({ id: subject.id, newPassword: subjectPassword }, o));
    await step('yardmaster.v1.AuthService.Login', name, AuditOutcome.SUCCESS, (o) => server.client().auth.login({ username: name, password: subjectPassword }, o), '(subject)');
    await step('UpdateSetting', 'auth.account_throttle_max_delay', AuditOutcome.SUCCESS, (o) => admin.admin.updateSetting({ key: 'auth.account_throttle_max_delay', value: jsonValue(null) }, o));
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
    const adminEvents = script.filter((s) => s.actor === adminUser.id).reverse().map((s) => s.rid);
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
    expect(updates.auditEvents.map((e) => e.requestId)).toEqual(script.filter((s) => s.action === `${service}.UpdateUser`).reverse().map((s) => s.rid));
    expect(updates.auditEvents.map((e) => e.outcome)).toEqual([AuditOutcome.FAILURE, AuditOutcome.SUCCESS]);

    const adminService = await admin.admin.listAuditEvents({ ...inWindow(), action: service });
    expect(adminService.auditEvents.map((e) => e.requestId)).toEqual(script.filter((s) => s.action.startsWith(`${service}.`)).reverse().map((s) => s.rid));
    const authService = await admin.admin.listAuditEvents({ ...inWindow(), action: 'yardmaster.v1.AuthService' });
    expect(authService.auditEvents.map((e) => e.action)).toEqual(['yardmaster.v1.AuthService.Login']);

    // Not a name prefix, and not a pattern.
    for (const action of ['yardmaster.v1.AdminServ', `${service}.Update`, `${service}.%`, `${service}._pdateUser`, `${service}.ListUsers`]) {
      expect((await admin.admin.listAuditEvents({ ...inWindow(), action })).auditEvents, action).toEqual([]);
    }
  });

  test('filters by target and by outcome', async () => {
    const onSubject = await admin.admin.listAuditEvents({ ...inWindow(), target: subject.id });
    expect(onSubject.auditEvents.map((e) => e.requestId)).toEqual(script.filter((s) => s.target === subject.id).reverse().map((s) => s.rid));
    const onSetting = await admin.admin.listAuditEvents({ ...inWindow(), target: 'auth.account_throttle_max_delay' });
    expect(onSetting.auditEvents).toHaveLength(2);
    const byName = await admin.admin.listAuditEvents({ ...inWindow(), target: subject.username, action: service });
    expect(byName.auditEvents.map((e) => e.action)).toEqual([`${service}.CreateUser`]);

    const failures = await admin.admin.listAuditEvents({ ...inWindow(), outcome: AuditOutcome.FAILURE });
    expect(failures.auditEvents.map((e) => e.requestId)).toEqual(script.filter((s) => s.outcome === AuditOutcome.FAILURE).map((s) => s.rid));
    expect(failures.auditEvents[0]).toMatchObject({ errorCode: 'invalid_argument', target: subject.id });
    const successes = await admin.admin.listAuditEvents({ ...inWindow(), outcome: AuditOutcome.SUCCESS });
    expect(successes.auditEvents).toHaveLength(script.length - 1);
    expect(successes.auditEvents.every((e) => e.outcome === AuditOutcome.SUCCESS)).toBe(true);

    // Filters combine.
    const combined = await admin.admin.listAuditEvents({ ...inWindow(), actor: 'admin', action: `${service}.UpdateUser`, target: subject.id, outcome: AuditOutcome.SUCCESS });
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
      expect(events.map((e) => e.requestId), `page_size ${pageSize}`).toEqual(expected);
      expect(new Set(events.map((e) => e.id)).size).toBe(expected.length);
      expect(pages).toBe(Math.ceil(expected.length / pageSize));
    }
    const { events } = await allAuditPages(admin.admin, { ...inWindow(), actor: 'admin', action: service }, 2);
    expect(events.map((e) => e.requestId)).toEqual(script.filter((s) => s.actor === adminUser.id).reverse().map((s) => s.rid));

    const first = await admin.admin.listAuditEvents({ ...inWindow(), pageSize: 2 });
    for (const changed of [{ actor: 'admin' }, { action: service }, { target: subject.id }, { outcome: AuditOutcome.SUCCESS }, { startTime: timestampFromDate(new Date(start.getTime() - 1)) }]) {
      const err = await expectConnectError(admin.admin.listAuditEvents({ ...inWindow(), ...changed, pageSize: 2, pageToken: first.nextPageToken }), Code.InvalidArgument);
      expect(violatedFields(err), Object.keys(changed).join(',')).toEqual(['page_token']);
    }
    expect(violatedFields(await expectConnectError(admin.admin.listAuditEvents({ pageToken: 'garbage' }), Code.InvalidArgument))).toEqual(['page_token']);
    expect(violatedFields(await expectConnectError(admin.admin.listAuditEvents({ pageSize: -5 }), Code.InvalidArgument))).toEqual(['page_size']);
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

// ---------------------------------------------------------------------------------------
// Two instances on one database: settings and signing keys travel between them
// ---------------------------------------------------------------------------------------

describe('two instances on one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let adminA: YardmasterClient;
  let adminB: YardmasterClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    a = await startTestServer({ database });
    b = await startTestServer({ database });
    adminA = await a.adminClient();
    adminB = await b.adminClient();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  test('a setting changed on A is visible on B within one second and takes effect there', async () => {
    const register = (server: TestServer) => {
      const name = `reg-${randomHex()}`;
      return server.client().auth.register({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password' });
    };
    const closed = await expectConnectError(register(b), Code.PermissionDenied);
    expect(reasonOf(closed)).toBe('REGISTRATION_CLOSED');

    await adminA.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(true) });
    const changedAt = Date.now();
    const seen = await eventually(async () => {
      const { setting } = await adminB.admin.getSetting({ key: 'auth.open_registration' });
      expect(plain(setting!.value)).toBe(true);
      return setting!;
    }, 1000);
    expect(Date.now() - changedAt).toBeLessThanOrEqual(1000);
    expect(seen.updatedBy).toBe('admin');
    expect(seen.updateTime).toBeDefined();

    const registered = await register(b);
    expect(registered.user!.role).toBe(Role.USER);
    expect(await a.countRows('select count(*) as n from users where id = $1', [registered.user!.id])).toBe(1);

    // And back: restoring the default on A closes registration on B.
    await adminA.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(null) });
    const restoredAt = Date.now();
    await eventually(async () => {
      const { setting } = await adminB.admin.getSetting({ key: 'auth.open_registration' });
      expect(plain(setting!.value)).toBe(false);
      expect(setting!.updatedBy).toBe('');
    }, 1000);
    expect(Date.now() - restoredAt).toBeLessThanOrEqual(1000);
    expect(reasonOf(await expectConnectError(register(b), Code.PermissionDenied))).toBe('REGISTRATION_CLOSED');
  });

  test('RotateSigningKey: old tokens keep working, new ones carry the new kid, the JWKS lists both, and B accepts the new key', async () => {
    const oldTokenA = adminA.tokens!.accessToken;
    const oldTokenB = adminB.tokens!.accessToken;
    const oldKid = jwtHeader(oldTokenA).kid;
    expect(jwtHeader(oldTokenA).alg).toBe('EdDSA');
    expect(jwtHeader(oldTokenB).kid).toBe(oldKid);
    expect((await jwks(a)).keys.map((k) => k['kid'])).toEqual([oldKid]);

    const rid = requestId('rotate');
    const rotated = await adminA.admin.rotateSigningKey({}, withRequestId(rid));
    expect(rotated.keyId).not.toBe('');
    expect(rotated.keyId).not.toBe(oldKid);
    expect(rotated.previousKeyId).toBe(oldKid);

    const keys = await a.query<{ id: string; retired_at: Date | null }>('select id, retired_at from signing_keys order by created_at');
    expect(keys.map((k) => k.id)).toEqual([oldKid, rotated.keyId]);
    expect(keys[0]!.retired_at).not.toBeNull();
    expect(keys[1]!.retired_at).toBeNull();

    // Tokens signed before the rotation still work, on both instances.
    for (const server of [a, b]) {
      for (const token of [oldTokenA, oldTokenB]) {
        expect((await server.bearerClient(token).admin.listUsers({ query: 'admin' })).users.length).toBeGreaterThan(0);
      }
    }

    // New logins on A are signed with the new key, and B accepts them at once.
    const newLogin = await a.signIn('admin', adminPassword);
    const newToken = newLogin.tokens!.accessToken;
    expect(jwtHeader(newToken).kid).toBe(rotated.keyId);
    expect((await a.bearerClient(newToken).auth.getMe({})).user!.username).toBe('admin');
    expect((await b.bearerClient(newToken).auth.getMe({})).user!.username).toBe('admin');
    expect((await b.bearerClient(newToken).admin.getMetrics({})).usersTotal).toBeGreaterThan(0n);

    // The JWKS of both instances lists both public keys, and nothing private.
    const checkJwks = async (server: TestServer) => {
      const { keys: published } = await jwks(server);
      expect(published.map((k) => k['kid']).sort()).toEqual([oldKid, rotated.keyId].sort());
      for (const key of published) {
        expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
        expect(key['d']).toBeUndefined();
        expect(typeof key['x']).toBe('string');
      }
    };
    await checkJwks(a);
    await eventually(() => checkJwks(b), 1000);

    // B signs with the new key too, within a second.
    await eventually(async () => {
      const login = await b.client().auth.login({ username: 'admin', password: adminPassword });
      expect(jwtHeader(login.accessToken).kid).toBe(rotated.keyId);
    }, 1000);

    expect(await auditRowsByRequestId(a, rid)).toEqual([
      expect.objectContaining({ action: `${service}.RotateSigningKey`, outcome: 'success', target: null, actor_username: 'admin' }),
    ]);

    // A second rotation, from B this time: every key so far still verifies.
    const again = await adminB.admin.rotateSigningKey({});
    expect(again.previousKeyId).toBe(rotated.keyId);
    expect(new Set([oldKid, rotated.keyId, again.keyId]).size).toBe(3);
    for (const token of [oldTokenA, newToken]) {
      await a.bearerClient(token).auth.getMe({});
      await b.bearerClient(token).auth.getMe({});
    }
    const newest = await a.signIn('admin', adminPassword);
    await eventually(async () => {
      const login = await a.client().auth.login({ username: 'admin', password: adminPassword });
      expect(jwtHeader(login.accessToken).kid).toBe(again.keyId);
    }, 1000);
    await a.bearerClient(newest.tokens!.accessToken).auth.getMe({});
    expect((await jwks(a)).keys).toHaveLength(3);
  });
});
