/**
 * Credentials are remembered by each instance once checked, and forgotten on every
 * instance when anything about them changes: two servers on one database, the change
 * made through A, the next call through B refused. B has used the credential just before
 * (so it remembers it); the test waits for the change's notification to arrive, never
 * for a fixed time.
 */
import { Code } from '@connectrpc/connect';
import pg from 'pg';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { eventually, expectConnectError } from '../support/assertions.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

let database: TestDatabase;
let a: TestServer;
let b: TestServer;
let adminOnA: YardmasterClient;
let listener: pg.Client;
let received = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  a = await startTestServer({ database });
  b = await startTestServer({ database });
  adminOnA = await a.adminClient();
  listener = new pg.Client({ connectionString: database.url });
  await listener.connect();
  listener.on('notification', () => received++);
  await listener.query('listen credentials_changed');
}, 120_000);

afterAll(async () => {
  await listener?.end();
  await a?.close();
  await b?.close();
  await database?.drop();
});

/** Runs `change` and resolves once its credentials_changed notification has arrived (as it does on every instance). */
async function changeAndWaitForNotification(change: () => Promise<unknown>): Promise<void> {
  const before = received;
  await change();
  await eventually(async () => expect(received).toBeGreaterThan(before), 5000);
}

/** The next call on B is refused: allowing for B's own notification to land, but with no fixed sleep. */
async function expectRefusedOnB(call: () => Promise<unknown>, code: Code): Promise<void> {
  await eventually(() => expectConnectError(call, code), 2000);
}

test('a session revoked on A is refused on B, though B checked its token a moment before', async () => {
  const { client } = await a.createUser();
  const onB = b.bearerClient(client.tokens!.accessToken);
  await onB.auth.getMe({});
  await onB.auth.getMe({});
  const { sessions } = await client.auth.listSessions({});
  await changeAndWaitForNotification(() => client.auth.revokeSession({ id: sessions[0]!.id }));
  await expectRefusedOnB(() => onB.auth.getMe({}), Code.Unauthenticated);
});

test('an account deactivated on A can no longer call B, by token or by API key', async () => {
  const { user, client } = await a.createUser();
  const { secret } = await client.auth.createApiKey({ name: 'script' });
  const byToken = b.bearerClient(client.tokens!.accessToken);
  const byKey = b.bearerClient(secret);
  await byToken.auth.getMe({});
  await byKey.auth.getMe({});
  await changeAndWaitForNotification(() =>
    adminOnA.admin.updateUser({ user: { id: user.id, active: false }, updateMask: { paths: ['active'] } }),
  );
  await expectRefusedOnB(() => byToken.auth.getMe({}), Code.Unauthenticated);
  await expectRefusedOnB(() => byKey.auth.getMe({}), Code.Unauthenticated);
});

test('an admin demoted on A is refused admin methods on B at once', async () => {
  const { user, client } = await a.createUser({ role: Role.ADMIN });
  const onB = b.bearerClient(client.tokens!.accessToken);
  await onB.admin.listUsers({});
  await changeAndWaitForNotification(() =>
    adminOnA.admin.updateUser({ user: { id: user.id, role: Role.USER }, updateMask: { paths: ['role'] } }),
  );
  await expectRefusedOnB(() => onB.admin.listUsers({}), Code.PermissionDenied);
  expect((await onB.auth.getMe({})).user?.role).toBe(Role.USER);
});

test('an API key revoked on A is refused on B', async () => {
  const { client } = await a.createUser();
  const { apiKey, secret } = await client.auth.createApiKey({ name: 'pipeline' });
  const onB = b.bearerClient(secret);
  await onB.auth.getMe({});
  await changeAndWaitForNotification(() => client.auth.revokeApiKey({ id: apiKey!.id }));
  await expectRefusedOnB(() => onB.auth.getMe({}), Code.Unauthenticated);
});

test('a change missed while the LISTEN connections were down is not served from memory', async () => {
  const { client } = await a.createUser();
  const onB = b.bearerClient(client.tokens!.accessToken);
  await onB.auth.getMe({});
  // Cuts every instance's LISTEN connection: the revocation's notification reaches nobody.
  await listener.query(
    `select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen %'`,
  );
  const { sessions } = await client.auth.listSessions({});
  await client.auth.revokeSession({ id: sessions[0]!.id });
  await expectRefusedOnB(() => onB.auth.getMe({}), Code.Unauthenticated);
});

test('a refresh, which only extends a session, makes no instance forget what it checked', async () => {
  const { client } = await a.createUser();
  const other = await a.createUser();
  const { sessions } = await other.client.auth.listSessions({});
  const before = received;
  await a.authClient().refresh({ refreshToken: client.tokens!.refreshToken });
  // Notifications arrive in commit order: once the revocation's has come, a refresh's would have too.
  await changeAndWaitForNotification(() => other.client.auth.revokeSession({ id: sessions[0]!.id }));
  expect(received).toBe(before + 1);
});
