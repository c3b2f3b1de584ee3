/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * Security tests against a real server on a real database: bearer credentials that must
 * not work, public methods with stale credentials, cross-user isolation, role checks,
 * error hygiene, request ids, secrets at rest and login timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect } from 'vitest';
import { fromBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import { importJWK, generateKeyPair, SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, type JWK, type JWTPayload } from 'jose';
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

export interface JsonErrorBody {
  code?: string;
  message?: string;
  details?: { type: string; value: string; debug?: unknown }[];
}

export interface RawReply {
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
    [/\b(refresh_tokens|api_keys|signing_keys|audit_events|rate_limit_counters|mikro_orm_migrations|password_hash|secret_hash|token_hash|private_jwk)\b/, 'table or column name'],
    [/"(users|sessions|settings)"|\b(users|sessions|settings)\.(id|user_id|username|email|key)\b/, 'table name'],
    [/duplicate key|violates|constraint|relation "|syntax error|postgres|\bpg_|mikro-?orm|DriverException|ECONNREFUSED/i, 'database internals'],
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

export interface ServerKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function currentServerKey(): Promise<ServerKey> {
  const [row] = await server.query<{ id: string; private_jwk: JWK; public_jwk: JWK }>(
    'select id, private_jwk, public_jwk from signing_keys where retired_at is null order by created_at desc limit 1',
  );
  expect(row).toBeDefined();
  return { kid: row!.id, privateJwk: row!.private_jwk, publicJwk: row!.public_jwk };
}

/** A token signed with the server's own current key, with the claims given. */
export async function signWithServerKey(
  claims: JWTPayload,
  options: { issuer?: string; audience?: string; expiresAt?: number; issuedAt?: number } = {},
): Promise<string> {
  const key = await currentServerKey();
  const privateKey = await importJWK(key.privateJwk, 'EdDSA');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
    .setIssuer(options.issuer ?? 'yardmaster')
    .setAudience(options.audience ?? 'yardmaster')
    .setJti(randomUUID())
    .setIssuedAt(options.issuedAt ?? now)
    .setExpirationTime(options.expiresAt ?? now + 600)
    .sign(privateKey);
}

export type Claims = { sub: string; sid: string; role: string };

/** sub/sid/role of user A's real access token. */
export function claimsOfA(): Claims {
  const payload = decodeJwt(userA.client.tokens!.accessToken);
  return { sub: payload.sub!, sid: payload['sid'] as string, role: payload['role'] as string };
}

// ---------------------------------------------------------------------------------------
// Tokens

export interface BadCredentialCase {
  name: string;
  /** The whole Authorization header value. */
  header: () => Promise<string>;
  reason: string;
  /** Whether the value is a bearer credential the project's own client can send as an API key. */
  bearer: boolean;
}

export const badCredentials: BadCredentialCase[] = [
  {
    name: 'forged token (fresh Ed25519 key, server kid, same claims)',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const { kid } = await currentServerKey();
      const { privateKey } = await generateKeyPair('Ed25519');
      const { sub, sid, role } = claimsOfA();
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sid, role })
        .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT' })
        .setIssuer('yardmaster')
        .setAudience('yardmaster')
        .setSubject(sub)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(privateKey);
      return `Bearer ${token}`;
    },
  },
  {
    name: 'alg=none token',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const { kid } = await currentServerKey();
      const { sub, sid, role } = claimsOfA();
      const now = Math.floor(Date.now() / 1000);
      const unsecured = new UnsecuredJWT({ sid, role })
        .setIssuer('yardmaster')
        .setAudience('yardmaster')
        .setSubject(sub)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .encode();
      // Also the variant with the server's kid in the header: still alg none, no signature.
      const [, payload] = unsecured.split('.');
      const withKid = `${base64url({ alg: 'none', kid, typ: 'JWT' })}.${payload}.`;
      expect(decodeProtectedHeader(withKid).alg).toBe('none');
      return `Bearer ${withKid}`;
    },
  },
  {
    name: 'HS256 token keyed with the public key',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const { kid, publicJwk } = await currentServerKey();
      const { sub, sid, role } = claimsOfA();
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sid, role })
        .setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' })
        .setIssuer('yardmaster')
        .setAudience('yardmaster')
        .setSubject(sub)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
      return `Bearer ${token}`;
    },
  },
  {
    name: 'expired token signed with the server key',
    reason: 'ACCESS_TOKEN_EXPIRED',
    bearer: true,
    header: async () => {
      const { sub, sid, role } = claimsOfA();
      const now = Math.floor(Date.now() / 1000);
      const token = await signWithServerKey({ sub, sid, role }, { issuedAt: now - 7200, expiresAt: now - 3600 });
      return `Bearer ${token}`;
    },
  },
  {
    name: 'wrong audience',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => `Bearer ${await signWithServerKey(claimsOfA(), { audience: 'some-other-service' })}`,
  },
  {
    name: 'wrong issuer',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => `Bearer ${await signWithServerKey(claimsOfA(), { issuer: 'https://evil.example.com' })}`,
  },
  {
    name: 'valid user, unknown session id',
    reason: 'SESSION_REVOKED',
    bearer: true,
    header: async () => `Bearer ${await signWithServerKey({ ...claimsOfA(), sid: randomUUID() })}`,
  },
  ...(
    [
      ['session id that is not a UUID', (c: Claims) => ({ ...c, sid: "1' or '1'='1" })],
      ['subject that is not a UUID', (c: Claims) => ({ ...c, sub: 'admin' })],
      ['session id of the wrong type', (c: Claims) => ({ ...c, sid: 42 })],
      ['no session id', ({ sid: _sid, ...c }: Claims) => c],
      ['role the server does not have', (c: Claims) => ({ ...c, role: 'root' })],
    ] as const
  ).map(
    ([what, edit]): BadCredentialCase => ({
      name: `signed with the server key, ${what}`,
      reason: 'ACCESS_TOKEN_INVALID',
      bearer: true,
      header: async () => `Bearer ${await signWithServerKey(edit(claimsOfA()))}`,
    }),
  ),
  {
    name: 'signed with the server key, issued 5 minutes in the future',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const now = Math.floor(Date.now() / 1000);
      return `Bearer ${await signWithServerKey(claimsOfA(), { issuedAt: now + 300, expiresAt: now + 600 })}`;
    },
  },
  {
    name: 'signed with the server key, valid for 10 years',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const now = Math.floor(Date.now() / 1000);
      return `Bearer ${await signWithServerKey(claimsOfA(), { issuedAt: now, expiresAt: now + 10 * 365 * 86_400 })}`;
    },
  },
  {
    name: 'tampered payload (role changed to admin)',
    reason: 'ACCESS_TOKEN_INVALID',
    bearer: true,
    header: async () => {
      const [header, payload, signature] = userA.client.tokens!.accessToken.split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
      expect(claims['role']).toBe('user');
      claims['role'] = 'admin';
      return `Bearer ${header}.${base64url(claims)}.${signature}`;
    },
  },
  {
    name: 'malformed header "Basic x"',
    reason: 'CREDENTIALS_MALFORMED',
    bearer: false,
    header: async () => 'Basic x',
  },
  {
    name: 'malformed header "Bearer" (no credential)',
    reason: 'CREDENTIALS_MALFORMED',
    bearer: false,
    header: async () => 'Bearer',
  },
  {
    name: 'unknown ym_ API key',
    reason: 'API_KEY_INVALID',
    bearer: true,
    header: async () => `Bearer ym_${randomBytes(32).toString('base64url')}`,
  },
];
