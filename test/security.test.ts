/**
 * Security tests against a real server on a real database: bearer credentials that must
 * not work, public methods with stale credentials, cross-user isolation, role checks,
 * error hygiene, request ids, secrets at rest and login timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fromBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { importJWK, generateKeyPair, SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, type JWK, type JWTPayload } from 'jose';
import { AuthService } from '../gen/yardmaster/v1/auth_pb.ts';
import { AdminService } from '../gen/yardmaster/v1/admin_pb.ts';
import { FilesService } from '../gen/yardmaster/v1/files_pb.ts';
import { JobsService } from '../gen/yardmaster/v1/jobs_pb.ts';
import { QueueService } from '../gen/yardmaster/v1/queue_pb.ts';
import { BadRequestSchema, ErrorInfoSchema, Role } from '../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { connectErrorOf, expectConnectError, waitUntil } from './support/assertions.ts';
import { adminPassword, startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

/** A short body deadline, so that the slow-body test is quick. */
const bodyDeadlineMs = 1500;
let server: TestServer;
let userA: TestUser;
let userB: TestUser;
let worker: TestUser;
let admin: YardmasterClient;

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
async function postJson(path: string, body: string, headers: Record<string, string> = {}): Promise<RawReply> {
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
function jsonDetail<Desc extends DescMessage>(body: JsonErrorBody, desc: Desc): MessageShape<Desc> | undefined {
  const detail = body.details?.find((entry) => entry.type === desc.typeName);
  return detail ? fromBinary(desc, Buffer.from(detail.value, 'base64')) : undefined;
}

/** Fails when a text handed to a client looks like it came from the server's insides. */
function expectHygienic(text: string): void {
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
function expectHygienicError(error: ConnectError): void {
  expectHygienic(error.rawMessage);
  const info = error.findDetails(ErrorInfoSchema)[0];
  if (info) expectHygienic(JSON.stringify(info));
  for (const bad of error.findDetails(BadRequestSchema)) expectHygienic(JSON.stringify(bad));
}

/** Checks a raw Connect JSON error reply. */
function expectJsonError(reply: RawReply, httpStatus: number, code: string, reason?: string): void {
  expect(reply.status, reply.text).toBe(httpStatus);
  expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  expect(reply.json.code, reply.text).toBe(code);
  expect(typeof reply.json.message).toBe('string');
  expectHygienic(reply.text);
  const info = jsonDetail(reply.json, ErrorInfoSchema);
  if (reason !== undefined) expect(info?.reason, reply.text).toBe(reason);
  if (info) expectHygienic(JSON.stringify(info));
}

function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

interface ServerKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

async function currentServerKey(): Promise<ServerKey> {
  const [row] = await server.query<{ id: string; private_jwk: JWK; public_jwk: JWK }>(
    'select id, private_jwk, public_jwk from signing_keys where retired_at is null order by created_at desc limit 1',
  );
  expect(row).toBeDefined();
  return { kid: row!.id, privateJwk: row!.private_jwk, publicJwk: row!.public_jwk };
}

/** A token signed with the server's own current key, with the claims given. */
async function signWithServerKey(
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

type Claims = { sub: string; sid: string; role: string };

/** sub/sid/role of user A's real access token. */
function claimsOfA(): Claims {
  const payload = decodeJwt(userA.client.tokens!.accessToken);
  return { sub: payload.sub!, sid: payload['sid'] as string, role: payload['role'] as string };
}

// ---------------------------------------------------------------------------------------
// Tokens

interface BadCredentialCase {
  name: string;
  /** The whole Authorization header value. */
  header: () => Promise<string>;
  reason: string;
  /** Whether the value is a bearer credential the project's own client can send as an API key. */
  bearer: boolean;
}

const badCredentials: BadCredentialCase[] = [
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

describe('bearer credentials that must not work', () => {
  test('sanity: user A\'s real token works on GetMe over raw JSON', async () => {
    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { authorization: `Bearer ${userA.client.tokens!.accessToken}` });
    expect(reply.status, reply.text).toBe(200);
    expect((reply.json['user'] as { id: string }).id).toBe(userA.user.id);
  });

  test.each(badCredentials)('$name -> Unauthenticated', async ({ header, reason, bearer }) => {
    const authorization = await header();

    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { authorization });
    expectJsonError(reply, 401, 'unauthenticated', reason);
    expect(reply.json['user']).toBeUndefined();

    const viaConnect = await expectConnectError(() => server.authClient({ authorization }).getMe({}), Code.Unauthenticated, reason);
    expectHygienicError(viaConnect);

    if (bearer) {
      // The project's own client (sending the credential as its API key), over gRPC.
      const secret = authorization.slice('Bearer '.length);
      const client = server.client({ apiKey: secret, protocol: 'grpc' });
      const viaGrpc = await expectConnectError(() => client.auth.getMe({}), Code.Unauthenticated, reason);
      expectHygienicError(viaGrpc);
      // And a method that would reveal more than GetMe.
      const listing = await expectConnectError(() => client.auth.listApiKeys({}), Code.Unauthenticated, reason);
      expectHygienicError(listing);
    }
  });

  test('a token signed with the server key but malformed or outside policy says which claim is wrong', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, Promise<string>]> = [
      ['claim sid is malformed', signWithServerKey({ ...claimsOfA(), sid: 'not-a-uuid' })],
      ['claim sub is malformed', signWithServerKey({ ...claimsOfA(), sub: 'admin' })],
      ['claim sid is missing', signWithServerKey({ sub: claimsOfA().sub, role: 'user' })],
      ['issued in the future', signWithServerKey(claimsOfA(), { issuedAt: now + 300, expiresAt: now + 600 })],
      ['lives longer than this server issues tokens for', signWithServerKey(claimsOfA(), { issuedAt: now, expiresAt: now + 10 * 365 * 86_400 })],
    ];
    for (const [message, token] of cases) {
      const error = await expectConnectError(server.bearerAuthClient(await token).getMe({}), Code.Unauthenticated, 'ACCESS_TOKEN_INVALID');
      expect(error.rawMessage).toContain(message);
    }
    // Within the allowances: issued 30 s ahead of this clock, living the configured 15 minutes.
    const skewed = await signWithServerKey(claimsOfA(), { issuedAt: now + 30, expiresAt: now + 30 + 15 * 60 });
    expect((await server.bearerAuthClient(skewed).getMe({})).user?.id).toBe(userA.user.id);
  });

  test('the tampered-role token does not open admin methods either', async () => {
    const [header, payload, signature] = userA.client.tokens!.accessToken.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = `${header}.${base64url({ ...claims, role: 'admin' })}.${signature}`;
    const reply = await postJson('/yardmaster.v1.AdminService/ListUsers', '{}', { authorization: `Bearer ${forged}` });
    expectJsonError(reply, 401, 'unauthenticated');
  });
});

describe('public methods with stale credentials', () => {
  test('Login succeeds with a garbage Authorization header', async () => {
    const body = JSON.stringify({ username: userA.user.username, password: userA.password });
    for (const authorization of ['garbage', 'Bearer garbage.token.here', 'Basic x', `Bearer ym_${randomBytes(8).toString('hex')}`]) {
      const reply = await postJson('/yardmaster.v1.AuthService/Login', body, { authorization });
      expect(reply.status, `${authorization}: ${reply.text}`).toBe(200);
      expect(reply.json['accessToken']).toEqual(expect.any(String));
      expect((reply.json['user'] as { id: string }).id).toBe(userA.user.id);
    }
    const typed = await server.authClient({ authorization: 'garbage' }).login({ username: userA.user.username, password: userA.password });
    expect(typed.user?.id).toBe(userA.user.id);
  });

  test('Login succeeds with an expired access token', async () => {
    const { sub, sid, role } = claimsOfA();
    const now = Math.floor(Date.now() / 1000);
    const expired = await signWithServerKey({ sub, sid, role }, { issuedAt: now - 7200, expiresAt: now - 3600 });
    const response = await server.authClient({ authorization: `Bearer ${expired}` }).login({ username: userA.user.username, password: userA.password });
    expect(response.accessToken).not.toBe('');
  });
});

// ---------------------------------------------------------------------------------------
// Isolation and roles

describe('cross-user isolation', () => {
  test('user A cannot revoke, or see, user B\'s API keys and sessions', async () => {
    const keyOfB = await userB.client.auth.createApiKey({ name: 'b-key' });
    const keyOfA = await userA.client.auth.createApiKey({ name: 'a-key' });
    const sessionsOfB = await userB.client.auth.listSessions({});
    expect(sessionsOfB.sessions.length).toBeGreaterThan(0);
    const sessionOfB = sessionsOfB.sessions[0]!;

    const revokeKey = await expectConnectError(() => userA.client.auth.revokeApiKey({ id: keyOfB.apiKey!.id }), Code.NotFound);
    expectHygienicError(revokeKey);
    const revokeSession = await expectConnectError(() => userA.client.auth.revokeSession({ id: sessionOfB.id }), Code.NotFound);
    expectHygienicError(revokeSession);
    // An id that exists nowhere gets exactly the same answer: existence is not leaked.
    const revokeNothing = await connectErrorOf(() => userA.client.auth.revokeApiKey({ id: randomUUID() }));
    expect(revokeNothing.code).toBe(Code.NotFound);
    expect(revokeNothing.rawMessage).toBe(revokeKey.rawMessage);
    const revokeNoSession = await connectErrorOf(() => userA.client.auth.revokeSession({ id: randomUUID() }));
    expect(revokeNoSession.rawMessage).toBe(revokeSession.rawMessage);

    const keysOfA = await userA.client.auth.listApiKeys({ showRevoked: true });
    expect(keysOfA.apiKeys.map((key) => key.id)).toContain(keyOfA.apiKey!.id);
    expect(keysOfA.apiKeys.map((key) => key.id)).not.toContain(keyOfB.apiKey!.id);
    const ownerOfAKeys = await server.query<{ user_id: string }>('select distinct user_id from api_keys where id = any($1::uuid[])', [
      keysOfA.apiKeys.map((key) => key.id),
    ]);
    expect(ownerOfAKeys.map((row) => row.user_id)).toEqual([userA.user.id]);

    const sessionsOfA = await userA.client.auth.listSessions({});
    expect(sessionsOfA.sessions.map((session) => session.id)).not.toContain(sessionOfB.id);
    const ownerOfASessions = await server.query<{ user_id: string }>('select distinct user_id from sessions where id = any($1::uuid[])', [
      sessionsOfA.sessions.map((session) => session.id),
    ]);
    expect(ownerOfASessions.map((row) => row.user_id)).toEqual([userA.user.id]);

    // B's key and session are untouched.
    const byKeyOfB = server.client({ apiKey: keyOfB.secret });
    expect((await byKeyOfB.auth.getMe({})).user?.id).toBe(userB.user.id);
    expect((await userB.client.auth.listSessions({})).sessions.map((session) => session.id)).toContain(sessionOfB.id);
    const [keyRow] = await server.query<{ revoked_at: Date | null }>('select revoked_at from api_keys where id = $1', [keyOfB.apiKey!.id]);
    expect(keyRow?.revoked_at).toBeNull();
  });
});

/** Every AdminService method, called with a harmless request. */
const adminCalls: [string, (client: Client<typeof AdminService>) => Promise<unknown>][] = [
  ['ListUsers', (c) => c.listUsers({})],
  ['GetUser', (c) => c.getUser({ id: randomUUID() })],
  ['CreateUser', (c) => c.createUser({ username: `x-${randomBytes(3).toString('hex')}`, email: 'x@example.com', password: 'a-long-password-1', role: Role.ADMIN })],
  ['UpdateUser', (c) => c.updateUser({ user: { id: randomUUID(), role: Role.ADMIN }, updateMask: { paths: ['role'] } })],
  ['DeleteUser', (c) => c.deleteUser({ id: randomUUID(), confirm: 'x' })],
  ['ResetUserPassword', (c) => c.resetUserPassword({ id: randomUUID() })],
  ['ListSettings', (c) => c.listSettings({})],
  ['GetSetting', (c) => c.getSetting({ key: 'auth.open_registration' })],
  ['UpdateSetting', (c) => c.updateSetting({ key: 'auth.open_registration', value: { kind: { case: 'boolValue', value: true } } })],
  ['ListAuditEvents', (c) => c.listAuditEvents({})],
  ['GetMetrics', (c) => c.getMetrics({})],
  ['RotateSigningKey', (c) => c.rotateSigningKey({})],
];

describe('SQL in job filters is data', () => {
  test('label keys that could carry SQL are InvalidArgument on ListJobs, GetJobStats and WatchJobs; such values match nothing; nothing changes', async () => {
    const { job: jobOfB } = await userB.client.jobs.createJob({ type: 'noop', name: 'b-only', labels: { team: 'b' } });
    const keys = ['x?', "x'", 'x" or 1=1', "x?' is null or true --", 'Team', '$1'];
    for (const key of keys) {
      const labels = { [key]: " is null; update users set role = 'admin' --" };
      for (const call of [
        () => userA.client.jobs.listJobs({ filter: { labels } }),
        () => userA.client.jobs.getJobStats({ filter: { labels } }),
        async () => {
          for await (const message of userA.client.jobs.watchJobs({ filter: { labels } })) return message;
        },
      ]) {
        const error = await expectConnectError(call, Code.InvalidArgument);
        expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field)[0]).toMatch(/^filter\.labels/);
      }
    }
    for (const value of ["' or '1'='1", '? or true', "b' --"]) {
      expect((await userA.client.jobs.listJobs({ filter: { labels: { team: value } } })).jobs).toEqual([]);
      expect((await admin.jobs.listJobs({ filter: { labels: { team: value } } })).jobs).toEqual([]);
    }
    expect((await admin.jobs.listJobs({ filter: { labels: { team: 'b' } } })).jobs.map((job) => job.id)).toContain(jobOfB!.id);
    expect((await userA.client.auth.getMe({})).user?.role).toBe(Role.USER);
  });

  test('filters with thousands of types or statuses are InvalidArgument', async () => {
    const types = Array.from({ length: 5000 }, (_, index) => `type-${index}`);
    await expectConnectError(userA.client.jobs.listJobs({ filter: { types } }), Code.InvalidArgument);
    await expectConnectError(userA.client.jobs.listJobs({ filter: { statuses: Array.from({ length: 50 }, () => 1) } }), Code.InvalidArgument);
  });
});

describe('slow request bodies', () => {
  const login = '/yardmaster.v1.AuthService/Login';
  const started = () => performance.now();

  test('over HTTP/2, a single-message body that stalls is cut after the deadline, and the server answers others meanwhile', async () => {
    const session = http2.connect(server.url);
    try {
      const stream = session.request({ ':method': 'POST', ':path': login, 'content-type': 'application/json', 'content-length': String(4 * 1024 * 1024) });
      stream.write(Buffer.alloc(256 * 1024, 0x20));
      const t0 = started();
      const closed = await new Promise<number>((resolve) => {
        stream.on('error', () => {});
        stream.on('close', () => resolve(performance.now() - t0));
      });
      expect(closed).toBeGreaterThanOrEqual(bodyDeadlineMs - 200);
      expect((await userA.client.auth.getMe({})).user?.id).toBe(userA.user.id);
    } finally {
      session.close();
    }
  });

  test('over HTTP/1.1, the connection of a stalled body is closed after the deadline', async () => {
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST ${login} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\n\r\n`);
    socket.write(Buffer.alloc(256 * 1024, 0x20));
    const t0 = started();
    const closed = await new Promise<number>((resolve) => {
      socket.on('error', () => {});
      socket.on('close', () => resolve(performance.now() - t0));
      socket.resume();
    });
    expect(closed).toBeGreaterThanOrEqual(bodyDeadlineMs - 200);
  });
});

describe('values out of range', () => {
  test('times outside the years 1 to 9999 are InvalidArgument naming the field, on every call that takes one', async () => {
    const far = { seconds: 10n ** 15n, nanos: 0 };
    // Binary protobuf: JSON cannot even carry such a time.
    const user = await server.signIn(userA.user.username, userA.password, { protocol: 'grpc' });
    const grpcAdmin = await server.adminClient({ protocol: 'grpc' });
    const cases: [string, () => Promise<unknown>][] = [
      ['run_after', () => user.jobs.createJob({ type: 'noop', runAfter: far })],
      ['requests[1].run_after', () => user.jobs.batchCreateJobs({ requests: [{ type: 'noop' }, { type: 'noop', runAfter: far }] })],
      ['filter.created_after', () => user.jobs.listJobs({ filter: { createdAfter: far } })],
      ['filter.created_before', () => user.jobs.getJobStats({ filter: { createdBefore: { seconds: -(10n ** 15n), nanos: 0 } } })],
      ['expire_time', () => user.auth.createApiKey({ name: 'far', expireTime: far })],
      ['start_time', () => grpcAdmin.admin.listAuditEvents({ startTime: far })],
    ];
    for (const [field, call] of cases) {
      const error = await expectConnectError(call, Code.InvalidArgument);
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field), field).toEqual([field]);
    }
  });

  test('a setting value of NaN or Infinity (possible in binary protobuf) is InvalidArgument `value`, and the setting keeps its value', async () => {
    const grpcAdmin = await server.adminClient({ protocol: 'grpc' });
    const before = (await grpcAdmin.admin.getSetting({ key: 'auth.account_failure_limit' })).setting?.value;
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = await expectConnectError(grpcAdmin.admin.updateSetting({ key: 'auth.account_failure_limit', value: { kind: { case: 'numberValue', value } } }), Code.InvalidArgument);
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field)).toEqual(['value']);
    }
    expect((await grpcAdmin.admin.getSetting({ key: 'auth.account_failure_limit' })).setting?.value).toEqual(before);
  });
});

describe('admin methods', () => {
  test.each(adminCalls)('%s as a user and as a worker -> PermissionDenied', async (name, call) => {
    for (const caller of [userA, worker]) {
      const error = await expectConnectError(() => call(caller.client.admin), Code.PermissionDenied, 'ROLE_NOT_ALLOWED');
      expectHygienicError(error);
    }
    // The raw JSON reply is the same.
    const reply = await postJson(`/yardmaster.v1.AdminService/${name}`, '{}', { authorization: `Bearer ${worker.client.tokens!.accessToken}` });
    expectJsonError(reply, 403, 'permission_denied', 'ROLE_NOT_ALLOWED');
  });

  test('nothing was changed by the refused calls', async () => {
    const [{ count }] = (await server.query<{ count: string }>("select count(*) from users where role = 'admin'")) as [{ count: string }];
    expect(Number(count)).toBe(1);
    const settings = await server.query<{ value: unknown }>("select value from settings where key = 'auth.open_registration'");
    expect(settings.every((row) => row.value === false)).toBe(true);
    const keys = await server.query<{ count: string }>('select count(*) from signing_keys');
    expect(Number(keys[0]!.count)).toBe(1);
    // The worker itself is fine.
    expect((await worker.client.auth.getMe({})).user?.role).toBe(Role.WORKER);
  });
});

// ---------------------------------------------------------------------------------------
// Error hygiene

describe('error hygiene', () => {
  test('failing calls never expose stacks, SQL, table names or error class prefixes', async () => {
    const anonymous = server.client();
    const calls: [string, () => Promise<unknown>][] = [
      ['login wrong password', () => anonymous.auth.login({ username: userA.user.username, password: 'wrong-password-123' })],
      ['login unknown user', () => anonymous.auth.login({ username: 'nobody-here', password: 'wrong-password-123' })],
      ['login empty', () => anonymous.auth.login({})],
      ['login by e-mail, wrong', () => anonymous.auth.login({ username: 'nobody@example.com', password: 'x' })],
      ['refresh garbage', () => anonymous.auth.refresh({ refreshToken: 'ymr_garbage' })],
      ['refresh not a token', () => anonymous.auth.refresh({ refreshToken: "'; drop table users; --" })],
      ['logout garbage', () => anonymous.auth.logout({ refreshToken: 'ymr_nothing' })],
      ['logout nothing', () => anonymous.auth.logout({})],
      ['register closed', () => anonymous.auth.register({ username: 'someone', email: 's@example.com', password: 'a-long-password-1' })],
      ['getMe anonymous', () => anonymous.auth.getMe({})],
      ['revokeApiKey not a uuid', () => userA.client.auth.revokeApiKey({ id: "1' or '1'='1" })],
      ['revokeSession empty', () => userA.client.auth.revokeSession({ id: '' })],
      ['createApiKey empty name', () => userA.client.auth.createApiKey({ name: '' })],
      ['createApiKey past expiry', () => userA.client.auth.createApiKey({ name: 'k', expireTime: { seconds: 1n, nanos: 0 } })],
      ['listApiKeys bad page token', () => userA.client.auth.listApiKeys({ pageToken: 'not-a-token' })],
      ['listApiKeys forged page token', () => userA.client.auth.listApiKeys({ pageToken: base64url({ c: "x' or 1=1", q: 'abc' }) })],
      ['listSessions negative page size', () => userA.client.auth.listSessions({ pageSize: -1 })],
      ['changePassword wrong current', () => userA.client.auth.changePassword({ currentPassword: 'nope-nope-nope', newPassword: 'another-long-password' })],
      ['changePassword too short', () => userA.client.auth.changePassword({ currentPassword: userA.password, newPassword: 'short' })],
      ['admin getUser unknown', () => admin.admin.getUser({ id: randomUUID() })],
      ['admin getUser not a uuid', () => admin.admin.getUser({ id: 'abc' })],
      ['admin createUser duplicate', () => admin.admin.createUser({ username: userA.user.username, email: userA.user.email, password: 'a-long-password-1', role: Role.USER })],
      ['admin createUser duplicate email', () => admin.admin.createUser({ username: 'fresh-name', email: userA.user.email, password: 'a-long-password-1', role: Role.USER })],
      ['admin createUser invalid', () => admin.admin.createUser({ username: 'x', email: 'not-an-email', password: 'short', role: Role.UNSPECIFIED })],
      ['admin updateUser bad mask', () => admin.admin.updateUser({ user: { id: userB.user.id }, updateMask: { paths: ['password'] } })],
      ['admin updateUser unknown', () => admin.admin.updateUser({ user: { id: randomUUID(), email: 'a@example.com' }, updateMask: { paths: ['email'] } })],
      ['admin deleteUser wrong confirm', () => admin.admin.deleteUser({ id: userB.user.id, confirm: 'wrong' })],
      ['admin getSetting unknown', () => admin.admin.getSetting({ key: 'no.such.setting' })],
      ['admin updateSetting wrong type', () => admin.admin.updateSetting({ key: 'auth.password_min_length', value: { kind: { case: 'stringValue', value: 'twelve' } } })],
      ['admin updateSetting out of range', () => admin.admin.updateSetting({ key: 'auth.password_min_length', value: { kind: { case: 'numberValue', value: 3 } } })],
      ['admin listAuditEvents bad token', () => admin.admin.listAuditEvents({ pageToken: '%%%' })],
      ['admin listUsers bad order', () => admin.admin.listUsers({ orderBy: 'password_hash desc; drop table users' })],
      ['user on admin method', () => userA.client.admin.listUsers({})],
    ];
    const seen: string[] = [];
    for (const [name, call] of calls) {
      const error = await connectErrorOf(call);
      seen.push(`${name}: ${Code[error.code]} ${error.rawMessage}`);
      expect(error.code, `${name}: ${error.rawMessage}`).not.toBe(Code.Internal);
      expect(error.code, `${name}: ${error.rawMessage}`).not.toBe(Code.Unknown);
      expectHygienicError(error);
      expect(error.rawMessage, name).not.toBe('');
    }
    expect(seen).toHaveLength(calls.length);
  });

  test('an id field that is not a UUID is InvalidArgument naming it on every unary method, never Internal', async () => {
    const notAUuid = "1' or '1'='1";
    // Fields named id, *_id or *_ids, at the top of the request or one message down (user.id).
    const idFields = (message: DescMessage, prefix = '', depth = 0): Array<{ path: string; repeated: boolean }> =>
      message.fields.flatMap((field) => {
        const path = `${prefix}${field.jsonName}`;
        if (field.fieldKind === 'message' && depth === 0) return idFields(field.message, `${path}.`, 1);
        const isId = field.name === 'id' || (field.name.endsWith('_id') && field.name !== 'request_id') || field.name.endsWith('_ids');
        return isId && (field.fieldKind === 'scalar' || field.fieldKind === 'list') ? [{ path, repeated: field.fieldKind === 'list' }] : [];
      });
    const results: string[] = [];
    const adminToken = admin.tokens!.accessToken;
    for (const service of [AuthService, AdminService, JobsService, FilesService, QueueService]) {
      for (const method of service.methods) {
        if (method.methodKind !== 'unary') continue;
        for (const { path, repeated } of idFields(method.input)) {
          const body: Record<string, unknown> = {};
          const [first, second] = path.split('.');
          const value = repeated ? [notAUuid] : notAUuid;
          if (second) body[first!] = { [second]: value };
          else body[first!] = value;
          const reply = await postJson(`/${service.typeName}/${method.name}`, JSON.stringify(body), { authorization: `Bearer ${adminToken}` });
          results.push(`${method.name} ${path}: ${reply.status} ${String(reply.json['code'])} ${String(reply.json['message'])}`);
          expect(reply.status, `${method.name} ${path}: ${reply.text}`).toBe(400);
          expect(reply.json['code'], `${method.name} ${path}`).toBe('invalid_argument');
          expectHygienic(reply.text);
        }
      }
    }
    expect(results.length).toBeGreaterThan(10);
  });

  test('a malformed JSON body -> InvalidArgument', async () => {
    for (const body of ['{"username":', '{username: "admin"}', 'not json at all', '{"username":"a","password":"b"} trailing']) {
      const reply = await postJson('/yardmaster.v1.AuthService/Login', body);
      expectJsonError(reply, 400, 'invalid_argument');
    }
  });

  test('a body of the wrong type -> InvalidArgument', async () => {
    for (const body of ['{"username": 5, "password": "x"}', '{"username": ["a"], "password": "x"}', '[1, 2]', '"a string"', '42', '{"pageSize": "many"}']) {
      const path = body.includes('pageSize') ? '/yardmaster.v1.AuthService/ListApiKeys' : '/yardmaster.v1.AuthService/Login';
      const reply = await postJson(path, body, { authorization: `Bearer ${userA.client.tokens!.accessToken}` });
      expectJsonError(reply, 400, 'invalid_argument');
    }
  });

  test('unknown JSON fields -> InvalidArgument', async () => {
    const reply = await postJson('/yardmaster.v1.AuthService/Login', JSON.stringify({ username: 'admin', password: adminPassword, isAdmin: true }));
    expectJsonError(reply, 400, 'invalid_argument');
    const getMe = await postJson('/yardmaster.v1.AuthService/GetMe', '{"userId": "someone-else"}', {
      authorization: `Bearer ${userA.client.tokens!.accessToken}`,
    });
    expectJsonError(getMe, 400, 'invalid_argument');
  });

  test('an oversized request (9 MiB) is refused and the server keeps serving', async () => {
    const huge = 'a'.repeat(9 * 1024 * 1024);
    let refused: { status: number; code: string | undefined } | 'connection closed';
    try {
      const reply = await postJson('/yardmaster.v1.AuthService/Login', JSON.stringify({ username: huge, password: 'x' }));
      refused = { status: reply.status, code: reply.json.code };
      expectHygienic(reply.text);
    } catch {
      // The server may close the connection instead of reading 9 MiB it will refuse.
      refused = 'connection closed';
    }
    if (refused !== 'connection closed') {
      expect(['resource_exhausted', 'invalid_argument']).toContain(refused.code);
    }

    // Through typed clients: Connect JSON on HTTP/1.1 (on an agent of its own, see the
    // next test), gRPC-Web binary on HTTP/1.1 and gRPC on HTTP/2.
    const agent = new http.Agent({ keepAlive: true });
    try {
      const clients = {
        'connect http/1.1': createClient(AuthService, createConnectTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: { agent } })),
        'grpc-web http/1.1': createClient(AuthService, createGrpcWebTransport({ baseUrl: server.url, httpVersion: '1.1', useBinaryFormat: true, nodeOptions: { agent: new http.Agent() } })),
        grpc: server.client({ protocol: 'grpc' }).auth,
      };
      for (const [name, client] of Object.entries(clients)) {
        const error = await connectErrorOf(() => client.login({ username: huge, password: 'x' }, { timeoutMs: 10_000 }));
        expect([Code.ResourceExhausted, Code.InvalidArgument], `${name}: ${Code[error.code]} ${error.rawMessage}`).toContain(error.code);
        expectHygienic(error.rawMessage);
      }
    } finally {
      agent.destroy();
    }

    // Still serving, on new and old connections.
    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { authorization: `Bearer ${userA.client.tokens!.accessToken}` });
    expect(reply.status).toBe(200);
    expect((await userA.client.auth.getMe({}, { timeoutMs: 5000 })).user?.id).toBe(userA.user.id);
    const anonymous = await connectErrorOf(() => server.client({ protocol: 'grpc' }).auth.getMe({}, { timeoutMs: 5000 }));
    expect(anonymous.code).toBe(Code.Unauthenticated);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  test('after refusing an oversized streamed (chunked) body, the HTTP/1.1 connection is closed or still answers', async () => {
    // A keep-alive agent with one socket: the second call must reuse the connection the
    // refused one used, as any pooled HTTP/1.1 client would.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const client = createClient(AuthService, createConnectTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: { agent } }));
      const huge = 'a'.repeat(9 * 1024 * 1024);
      const refused = await connectErrorOf(() => client.login({ username: huge, password: 'x' }, { timeoutMs: 10_000 }));
      expect(refused.code).toBe(Code.ResourceExhausted);
      const next = await client.login({ username: 'admin', password: adminPassword }, { timeoutMs: 3000 }).catch((error: unknown) => error);
      expect.soft(next instanceof ConnectError ? `${Code[next.code]}: ${next.rawMessage}` : 'answered', 'next call on the pooled connection').toBe('answered');
    } finally {
      agent.destroy();
    }

    // The same at the socket level: a chunked body over the limit, then a second request.
    const { port } = new URL(server.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    try {
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      let received = '';
      let closed = false;
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
      socket.on('close', () => (closed = true));
      socket.on('error', () => {});
      socket.write('POST /yardmaster.v1.AuthService/Login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
      const chunk = Buffer.alloc(1024 * 1024, 'a');
      for (let i = 0; i < 9 && !closed; i++) {
        await new Promise<void>((resolve) => socket.write(`${chunk.length.toString(16)}\r\n`, () => socket.write(chunk, () => socket.write('\r\n', () => resolve()))));
      }
      if (!closed) socket.write('0\r\n\r\n');
      await waitUntil(() => /\r\n\r\n/.test(received) || closed, 5000);
      const first = received;
      expect(first).toMatch(/^HTTP\/1\.1 (429|400|413)/);
      const announcedClose = /\r\nconnection: close\r\n/i.test(first);
      if (!closed) socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await waitUntil(() => closed || /HTTP\/1\.1 200/.test(received.slice(first.length)), 3000);
      const outcome = closed ? 'closed' : /HTTP\/1\.1 200/.test(received.slice(first.length)) ? 'answered' : 'hung';
      expect(outcome, `first reply: ${JSON.stringify(first.split('\r\n\r\n')[0])}`).not.toBe('hung');
      if (outcome === 'answered') expect(announcedClose).toBe(false);
    } finally {
      socket.destroy();
    }
  });

  test('a huge password (2000 characters) on Login -> InvalidArgument before any hashing', async () => {
    for (const username of [userA.user.username, 'unknown-user-for-huge-password']) {
      const error = await expectConnectError(() => server.client().auth.login({ username, password: 'p'.repeat(2000) }), Code.InvalidArgument);
      expectHygienicError(error);
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field)).toContain('password');
    }
    const reply = await postJson('/yardmaster.v1.AuthService/Login', JSON.stringify({ username: 'admin', password: 'p'.repeat(2000) }));
    expectJsonError(reply, 400, 'invalid_argument');
    expect(jsonDetail(reply.json, BadRequestSchema)?.fieldViolations[0]?.field).toBe('password');
  });
});

// ---------------------------------------------------------------------------------------
// Routes and request ids

describe('routes and request ids', () => {
  test('an unknown route -> 404', async () => {
    const get = await fetch(`${server.url}/no/such/route`);
    expect(get.status).toBe(404);
    await get.body?.cancel();
    for (const path of ['/yardmaster.v1.AuthService/NoSuchMethod', '/yardmaster.v1.NoSuchService/Login', '/', '/healthz/extra']) {
      const reply = await postJson(path, '{}');
      expect(reply.status, path).toBe(404);
      expectHygienic(reply.text);
    }
  });

  test('a sane x-request-id is echoed', async () => {
    const id = `trace-${randomBytes(6).toString('hex')}.part:1`;
    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', {
      'x-request-id': id,
      authorization: `Bearer ${userA.client.tokens!.accessToken}`,
    });
    expect(reply.status).toBe(200);
    expect(reply.headers.get('x-request-id')).toBe(id);
    // Also on errors and on plain routes.
    expect((await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { 'x-request-id': id })).headers.get('x-request-id')).toBe(id);
    const healthz = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': id } });
    expect(healthz.headers.get('x-request-id')).toBe(id);
    await healthz.body?.cancel();
  });

  test('an insane x-request-id is replaced by a generated one', async () => {
    for (const insane of ['has spaces in it', 'x'.repeat(300), 'new\tline', '<script>alert(1)</script>', 'a;b', '']) {
      const reply = await postJson('/yardmaster.v1.AuthService/Login', JSON.stringify({ username: 'admin', password: adminPassword }), { 'x-request-id': insane });
      expect(reply.status).toBe(200);
      const echoed = reply.headers.get('x-request-id');
      expect(echoed, insane).toBeTruthy();
      expect(echoed).not.toBe(insane);
      expect(echoed).toMatch(/^[\w.:-]{1,128}$/);
    }
  });

  test('every response carries x-request-id, and they differ', async () => {
    const token = userA.client.tokens!.accessToken;
    const responses = await Promise.all([
      fetch(`${server.url}/healthz`),
      fetch(`${server.url}/readyz`),
      fetch(`${server.url}/metrics`),
      fetch(`${server.url}/.well-known/jwks.json`),
      fetch(`${server.url}/no/such/route`),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{}' }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }),
      fetch(`${server.url}/yardmaster.v1.AuthService/Login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, { method: 'OPTIONS', headers: { origin: 'https://x.example.com', 'access-control-request-method': 'POST' } }),
    ]);
    const ids = new Set<string>();
    for (const response of responses) {
      const id = response.headers.get('x-request-id');
      expect(id, `${response.url} ${response.status}`).toMatch(/^[\w.:-]{1,128}$/);
      ids.add(id!);
      await response.body?.cancel();
    }
    expect(ids.size).toBe(responses.length);
    // And the typed client sees it too, on success and on failure.
    let header: string | null = null;
    await userA.client.auth.getMe({}, { onHeader: (headers) => (header = headers.get('x-request-id')) });
    expect(header).toBeTruthy();
    const error = await connectErrorOf(() => server.client().auth.getMe({}));
    expect(error.metadata.get('x-request-id')).toBeTruthy();
  });
});

// ---------------------------------------------------------------------------------------
// Secrets at rest

describe('secrets at rest', () => {
  test('no row holds a plaintext password, refresh token or API key', async () => {
    const password = `secret-password-${randomBytes(8).toString('hex')}`;
    const name = `secrets-${randomBytes(3).toString('hex')}`;
    await admin.admin.createUser({ username: name, email: `${name}@example.com`, password, role: Role.USER });
    const client = server.client();
    const login = await client.login(name, password);
    const key = await client.auth.createApiKey({ name: 'at-rest' });
    expect(key.secret.startsWith('ym_')).toBe(true);
    // A rotation stores a sealed reply: the new refresh token must not be readable either.
    const refreshed = await client.auth.refresh({ refreshToken: login.refreshToken });
    // Use the key, so last-used bookkeeping runs too.
    expect((await server.client({ apiKey: key.secret }).auth.getMe({})).user?.username).toBe(name);
    // A password change, so a second hash is written.
    const newPassword = `${password}-changed`;
    await server.client({ tokens: { accessToken: refreshed.accessToken, refreshToken: refreshed.refreshToken, accessTokenExpiresAt: undefined } }).auth.changePassword({
      currentPassword: password,
      newPassword,
    });

    const secrets: Record<string, string> = {
      password,
      newPassword,
      refreshToken: login.refreshToken,
      rotatedRefreshToken: refreshed.refreshToken,
      apiKey: key.secret,
      // The random part alone (a column could hold it without the prefix).
      apiKeyBody: key.secret.slice(3),
      refreshTokenBody: login.refreshToken.slice(4),
      accessToken: login.accessToken,
      accessTokenSignature: login.accessToken.split('.')[2]!,
    };
    for (const table of ['users', 'sessions', 'refresh_tokens', 'api_keys', 'audit_events', 'settings']) {
      const [{ count }] = (await server.query<{ count: string }>(`select count(*) from ${table}`)) as [{ count: string }];
      if (['users', 'sessions', 'refresh_tokens', 'api_keys'].includes(table)) expect(Number(count), table).toBeGreaterThan(0);
      for (const [what, secret] of Object.entries(secrets)) {
        const rows = await server.query(`select t::text as row from ${table} t where position($1 in t::text) > 0`, [secret]);
        expect(rows, `${what} found in ${table}`).toEqual([]);
      }
    }
    // The password hash is argon2id, not something reversible.
    const [user] = await server.query<{ password_hash: string }>('select password_hash from users where username = $1', [name]);
    expect(user!.password_hash).toMatch(/^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/);
    const [, memory, passes] = /m=(\d+),t=(\d+)/.exec(user!.password_hash)!;
    expect(Number(memory)).toBeGreaterThanOrEqual(19_456);
    expect(Number(passes)).toBeGreaterThanOrEqual(2);
  });
});

// ---------------------------------------------------------------------------------------
// Timing

describe('timing', () => {
  test('an unknown username and a wrong password take similar time', async () => {
    await server.setSetting('auth.account_failure_limit', 1000);
    await server.setSetting('auth.account_throttle_threshold', 1000);
    await server.setSetting('auth.address_failure_limit', 100_000);
    const anonymous = server.client();
    const attempt = async (username: string): Promise<number> => {
      const started = performance.now();
      const error = await connectErrorOf(() => anonymous.auth.login({ username, password: 'definitely-wrong-password' }));
      const elapsed = performance.now() - started;
      expect(error.code).toBe(Code.Unauthenticated);
      return elapsed;
    };
    // Warm up both paths (the decoy hash is computed on first use, connections open).
    await attempt(userB.user.username);
    await attempt('warm-up-unknown-user');

    const unknown: number[] = [];
    const wrongPassword: number[] = [];
    for (let i = 0; i < 11; i++) {
      unknown.push(await attempt(`unknown-user-${i}-${randomBytes(3).toString('hex')}`));
      wrongPassword.push(await attempt(userB.user.username));
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const ratio = median(unknown) / median(wrongPassword);
    // Without the decoy hash an unknown name would answer 20 to 50 times faster (a lookup
    // against an argon2 verification); the bounds leave room for a loaded machine.
    expect(ratio, `unknown ${median(unknown).toFixed(1)} ms vs wrong password ${median(wrongPassword).toFixed(1)} ms`).toBeGreaterThan(1 / 3);
    expect(ratio).toBeLessThan(3);

    // And the replies are the same.
    const a = await connectErrorOf(() => anonymous.auth.login({ username: 'nobody-at-all', password: 'definitely-wrong-password' }));
    const b = await connectErrorOf(() => anonymous.auth.login({ username: userB.user.username, password: 'definitely-wrong-password' }));
    expect(a.rawMessage).toBe(b.rawMessage);
    expect(a.findDetails(ErrorInfoSchema)[0]?.reason).toBe(b.findDetails(ErrorInfoSchema)[0]?.reason);
  });
});
