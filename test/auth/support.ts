/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * AuthService over a real server and a real PostgreSQL: every test calls the server as a
 * client would and checks the reply (code, error details) and what was or was not
 * written to the database. Nothing is mocked.
 *
 * The server trusts one proxy hop (TRUST_PROXY=1) so that the rate-limit tests can give
 * each test a client address of its own with X-Forwarded-For; calls without that header
 * come from 127.0.0.1 as usual. Every other test runs with generous per-address limits so
 * that failures elsewhere in this file never lock them out.
 */
import type { Client } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { SessionTokens, YardmasterClient } from '../../clients/ts/src/node.ts';
import type { AuthService } from '../../gen/yardmaster/v1/auth_pb.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

export const method = (service: 'AuthService' | 'AdminService', name: string) => `yardmaster.v1.${service}.${name}`;

export let server: TestServer;
export let admin: YardmasterClient;

/** Settings every test starts from; a test that changes others gets them restored after it. */
const suiteSettings: Record<string, unknown> = {
  'auth.address_failure_limit': 100_000,
  'auth.address_request_limit': 1_000_000,
};
const changedSettings = new Set<string>();

/** Starts the file's server (trusting one proxy hop, generous limits) before its tests, restores changed settings after each test and closes the server after them. */
export function useAuthServer(): void {
  beforeAll(async () => {
    server = await startTestServer({ env: { TRUST_PROXY: '1' } });
    admin = await server.adminClient();
    for (const [key, value] of Object.entries(suiteSettings)) await server.setSetting(key, value);
  });
  afterEach(async () => {
    for (const key of changedSettings) await server.setSetting(key, key in suiteSettings ? suiteSettings[key] : null);
    changedSettings.clear();
  });
  afterAll(() => server?.close());
}

// ---------------------------------------------------------------------------------------
// Helpers

export async function setSetting(key: string, value: unknown): Promise<void> {
  changedSettings.add(key);
  await server.setSetting(key, value);
}

let addressCounter = 0;
/** A client address no other test uses (TEST-NET-3), sent as X-Forwarded-For. */
export function freshAddress(): string {
  addressCounter += 1;
  return `203.0.113.${addressCounter}`;
}

/** An AuthService client calling from `address`. */
export function authFrom(address: string): Client<typeof AuthService> {
  return server.authClient({ 'x-forwarded-for': address });
}

export const sessionCount = (userId: string) => server.countRows('select count(*)::int as n from sessions where user_id = $1', [userId]);
export const openSessionCount = (userId: string) =>
  server.countRows('select count(*)::int as n from sessions where user_id = $1 and revoked_at is null', [userId]);
export const userCount = () => server.countRows('select count(*)::int as n from users');
export const auditCount = (action: string, outcome: 'success' | 'failure', reason?: string) =>
  server.countRows('select count(*)::int as n from audit_events where action = $1 and outcome = $2 and ($3::text is null or reason = $3)', [
    action,
    outcome,
    reason ?? null,
  ]);

/** The id of the session the client's access token belongs to. */
export async function currentSessionId(auth: Client<typeof AuthService>): Promise<string> {
  const { sessions } = await auth.listSessions({});
  const current = sessions.filter((session) => session.current);
  expect(current).toHaveLength(1);
  return current[0]!.id;
}

export function tokensOf(grant: { accessToken: string; refreshToken: string }): SessionTokens {
  return { accessToken: grant.accessToken, refreshToken: grant.refreshToken, accessTokenExpiresAt: undefined };
}

export async function deactivate(userId: string): Promise<void> {
  await admin.admin.updateUser({ user: { id: userId, active: false }, updateMask: { paths: ['active'] } });
}
