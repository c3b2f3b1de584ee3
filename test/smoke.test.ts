import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestServer, type TestServer } from './support/test-server.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

test('admin logs in, refreshes, uses an api key', async () => {
  const admin = await server.adminClient();
  const { user } = await admin.auth.getMe({});
  expect(user?.username).toBe('admin');
  const first = admin.tokens!;
  const refreshed = await admin.auth.refresh({ refreshToken: first.refreshToken });
  expect(refreshed.refreshToken).not.toBe(first.refreshToken);
  const again = await admin.auth.refresh({ refreshToken: first.refreshToken });
  expect(again.refreshToken).toBe(refreshed.refreshToken);
  const key = await admin.auth.createApiKey({ name: 'k' });
  const byKey = server.client({ apiKey: key.secret, protocol: 'grpc' });
  expect((await byKey.auth.getMe({})).user?.username).toBe('admin');
  const sessions = await admin.auth.listSessions({});
  expect(sessions.sessions.length).toBeGreaterThan(0);
  const users = await admin.admin.listUsers({ pageSize: 1 });
  expect(users.users.length).toBe(1);
  const audit = await admin.admin.listAuditEvents({});
  expect(audit.auditEvents.length).toBeGreaterThan(0);
  const settings = await admin.admin.listSettings({});
  expect(settings.settings.length).toBeGreaterThan(3);
  await admin.admin.updateSetting({ key: 'auth.open_registration', value: { kind: { case: 'boolValue', value: true } } as never });
  const reg = await server.client().auth.register({ username: 'bob', email: 'bob@example.com', password: 'a-long-password-1' });
  expect(reg.user?.username).toBe('bob');
  const m = await admin.admin.getMetrics({});
  expect(m.usersTotal).toBe(2n);
  const rot = await admin.admin.rotateSigningKey({});
  expect(rot.previousKeyId).not.toBe(rot.keyId);
  expect((await admin.auth.getMe({})).user?.username).toBe('admin');
});
