/**
 * AdminService ListUsers (filters, order, pages, page size limits) and GetUser.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Role, type User } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { type ListUsersInit, unknownUuid, createAccount, allUserPages, server, admin, useAdminServer } from './support.ts';

useAdminServer();

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
    await admin.admin.updateUser({ user: { id: fixture.bravo!.id, active: false }, updateMask: { paths: ['active'] } });
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
    expect(ids(alpha.users)).toEqual([fixture.alpha!.id]);

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
    expect(ids(workers.users)).toEqual([fixture.alpha!.id]);
    expect(workers.users[0]!.role).toBe(Role.WORKER);

    const admins = await admin.admin.listUsers({ query: prefix, role: Role.ADMIN });
    expect(ids(admins.users)).toEqual([fixture.charlie!.id]);

    const users = await admin.admin.listUsers({ query: prefix, role: Role.USER });
    expect(new Set(ids(users.users))).toEqual(new Set([fixture.delta!.id, fixture.bravo!.id, fixture.echo!.id, mailOnly.id]));

    const inactive = await admin.admin.listUsers({ query: prefix, active: false });
    expect(ids(inactive.users)).toEqual([fixture.bravo!.id]);
    expect(inactive.users[0]!.active).toBe(false);

    const active = await admin.admin.listUsers({ query: prefix, active: true });
    expect(new Set(ids(active.users))).toEqual(new Set(createdOrder.filter((id) => id !== fixture.bravo!.id)));
    expect(active.users.every((u) => u.active)).toBe(true);

    const activeUsers = await admin.admin.listUsers({ query: prefix, role: Role.USER, active: true });
    expect(new Set(ids(activeUsers.users))).toEqual(new Set([fixture.delta!.id, fixture.echo!.id, mailOnly.id]));

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
    expect(new Set(users)).toEqual(new Set([fixture.delta!.id, fixture.echo!.id, mailOnly.id]));
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
