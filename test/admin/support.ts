/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * AdminService over a real server and a real PostgreSQL database: access rules, user
 * administration, runtime settings, the audit log, metrics and signing-key rotation.
 * Every failure is checked by its Connect code and details, and by what was (not)
 * written in the database.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import type { CallOptions } from '@connectrpc/connect';
import { fromJson, toJson, type JsonValue } from '@bufbuild/protobuf';
import { type timestampFromDate, ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import type { AuditEvent, ListAuditEventsRequest, ListUsersRequest } from '../../gen/yardmaster/v1/admin_pb.ts';
import { Role, type User } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { randomHex } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

export type AdminClient = YardmasterClient['admin'];
export type ListUsersInit = Partial<Omit<ListUsersRequest, '$typeName'>>;
export type ListAuditInit = Partial<Omit<ListAuditEventsRequest, '$typeName' | 'startTime' | 'endTime'>> & {
  startTime?: ReturnType<typeof timestampFromDate>;
  endTime?: ReturnType<typeof timestampFromDate>;
};

export const service = 'yardmaster.v1.AdminService';
export const unknownUuid = '01900000-0000-7000-8000-000000000000';

export function requestId(label: string): string {
  return `${label}-${randomHex(6)}`;
}

export function withRequestId(id: string): CallOptions {
  return { headers: { 'x-request-id': id } };
}

export function jsonValue(value: JsonValue): Value {
  return fromJson(ValueSchema, value);
}

export function plain(value: Value | undefined): JsonValue | undefined {
  return value === undefined ? undefined : toJson(ValueSchema, value);
}

/** The protected header of a JWT. */
export function jwtHeader(token: string): { alg: string; kid: string; typ?: string } {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { alg: string; kid: string };
}

export interface Account {
  user: User;
  password: string;
}

export async function createAccount(
  admin: AdminClient,
  options: { username?: string; email?: string; role?: Role; password?: string } = {},
): Promise<Account> {
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

export interface UserRow {
  id: string;
  username: string;
  email: string;
  role: string;
  active: boolean;
  password_hash: string;
  created_at: Date;
  updated_at: Date;
}

export async function userRow(server: TestServer, id: string): Promise<UserRow | undefined> {
  const [row] = await server.query<UserRow>(
    'select id, username, email, role, active, password_hash, created_at, updated_at from users where id = $1',
    [id],
  );
  return row;
}

export interface AuditRow {
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

export function auditRowsByRequestId(server: TestServer, id: string): Promise<AuditRow[]> {
  return server.query<AuditRow>('select * from audit_events where request_id = $1', [id]);
}

/** Every user the filter yields, page by page, checking each page's size. */
export async function allUserPages(
  admin: AdminClient,
  request: ListUsersInit,
  pageSize: number,
): Promise<{ ids: string[]; pages: number }> {
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

export async function allAuditPages(
  admin: AdminClient,
  request: ListAuditInit,
  pageSize: number,
): Promise<{ events: AuditEvent[]; pages: number }> {
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

export async function jwks(server: TestServer): Promise<{ keys: Record<string, unknown>[] }> {
  const response = await fetch(`${server.url}/.well-known/jwks.json`);
  expect(response.status).toBe(200);
  return (await response.json()) as { keys: Record<string, unknown>[] };
}

// ---------------------------------------------------------------------------------------
// The shared server: most tests run here, on accounts of their own.
// ---------------------------------------------------------------------------------------

export let server: TestServer;
export let admin: YardmasterClient;
export let adminUser: User;

/** Starts the file's server (signed in as the admin) before its tests and closes it after them. */
export function useAdminServer(): void {
  beforeAll(async () => {
    server = await startTestServer();
    admin = await server.adminClient();
    adminUser = (await admin.auth.getMe({})).user!;
  });
  afterAll(() => server?.close());
}
