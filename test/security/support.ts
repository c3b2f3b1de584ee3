/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * Security tests against a real server on a real database: bearer credentials that must
 * not work, public methods with stale credentials, cross-user isolation, role checks,
 * error hygiene, request ids, secrets at rest and login timing.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { fromBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { ConnectError } from '@connectrpc/connect';
import { BadRequestSchema, ErrorInfoSchema, Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { startTestServer, type TestServer, type TestUser } from '../support/test-server.ts';

/** A short body deadline, so that the slow-body test is quick. */
export const bodyDeadlineMs = 1500;
export let server: TestServer;
export let userA: TestUser;
export let userB: TestUser;
export let worker: TestUser;
export let admin: YardmasterClient;

/** Starts the file's server with two users, a worker and the admin before its tests and closes it after them. */
export function useSecurityServer(): void {
  beforeAll(async () => {
    server = await startTestServer({ requestBodyDeadlineMs: bodyDeadlineMs });
    admin = await server.adminClient();
    // Credential rate limits are tested elsewhere; here they would only get in the way.
    await server.setSetting('auth.account_failure_limit', 1000);
    await server.setSetting('auth.account_throttle_threshold', 1000);
    await server.setSetting('auth.address_failure_limit', 100_000);
    [userA, userB, worker] = await Promise.all([
      server.createUser({ role: Role.USER }),
      server.createUser({ role: Role.USER }),
      server.createUser({ role: Role.WORKER }),
    ]);
  });
  afterAll(() => server?.close());
}

// ---------------------------------------------------------------------------------------
// Helpers

interface JsonErrorBody {
  code?: string;
  message?: string;
  details?: { type: string; value: string; debug?: unknown }[];
}

interface RawReply {
  status: number;
  headers: Headers;
  text: string;
  json: JsonErrorBody & Record<string, unknown>;
}

/** A plain HTTP POST with a JSON body, as curl or a script would send it. */
export async function postJson(path: string, body: string, headers: Record<string, string> = {}): Promise<RawReply> {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json: RawReply['json'] = {};
  try {
    json = JSON.parse(text) as RawReply['json'];
  } catch {
    // not JSON: left empty, the caller asserts on text
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Decodes one error detail of a Connect JSON error body. */
export function jsonDetail<Desc extends DescMessage>(body: JsonErrorBody, desc: Desc): MessageShape<Desc> | undefined {
  const detail = body.details?.find((entry) => entry.type === desc.typeName);
  return detail ? fromBinary(desc, Buffer.from(detail.value, 'base64')) : undefined;
}

/** Fails when a text handed to a client looks like it came from the server's insides. */
export function expectHygienic(text: string): void {
  const forbidden: [RegExp, string][] = [
    [/\n\s+at\s/, 'stack frame'],
    [/\bat\s+\S+\s+\(?[^\s()]+:\d+:\d+\)?/, 'stack frame'],
    [/\.(ts|js|mjs|cjs):\d+/, 'source location'],
    [/node_modules|file:\/\//, 'file path'],
    [/(^|[\s"'])(\w*Error|Exception):/, 'error class prefix'],
    [/\bselect\b[\s\S]*\bfrom\b/i, 'SQL'],
    [/\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+"?\w+"?\s+set\b/i, 'SQL'],
    [
      /\b(refresh_tokens|api_keys|signing_keys|audit_events|rate_limit_counters|mikro_orm_migrations|password_hash|secret_hash|token_hash|private_jwk)\b/,
      'table or column name',
    ],
    [/"(users|sessions|settings)"|\b(users|sessions|settings)\.(id|user_id|username|email|key)\b/, 'table name'],
    [
      /duplicate key|violates|constraint|relation "|syntax error|postgres|\bpg_|mikro-?orm|DriverException|ECONNREFUSED/i,
      'database internals',
    ],
  ];
  for (const [pattern, what] of forbidden) {
    expect(text, `${what} in ${JSON.stringify(text)}`).not.toMatch(pattern);
  }
}

/** Checks that a typed-client failure has a clean message and clean ErrorInfo and BadRequest details. */
export function expectHygienicError(error: ConnectError): void {
  expectHygienic(error.rawMessage);
  const info = error.findDetails(ErrorInfoSchema)[0];
  if (info) expectHygienic(JSON.stringify(info));
  for (const bad of error.findDetails(BadRequestSchema)) expectHygienic(JSON.stringify(bad));
}

/** Checks a raw Connect JSON error reply. */
export function expectJsonError(reply: RawReply, httpStatus: number, code: string, reason?: string): void {
  expect(reply.status, reply.text).toBe(httpStatus);
  expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  expect(reply.json.code, reply.text).toBe(code);
  expect(typeof reply.json.message).toBe('string');
  expectHygienic(reply.text);
  const info = jsonDetail(reply.json, ErrorInfoSchema);
  if (reason !== undefined) expect(info?.reason, reply.text).toBe(reason);
  if (info) expectHygienic(JSON.stringify(info));
}

export function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

// ---------------------------------------------------------------------------------------
// Tokens
