/**
 * Error hygiene (nothing internal leaks), routes and request ids.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, test } from 'vitest';
import type { DescMessage } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { AuthService } from '../../gen/yardmaster/v1/auth_pb.ts';
import { AdminService } from '../../gen/yardmaster/v1/admin_pb.ts';
import { FilesService } from '../../gen/yardmaster/v1/files_pb.ts';
import { JobsService } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { QueueService } from '../../gen/yardmaster/v1/queue_pb.ts';
import { BadRequestSchema, Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { connectErrorOf, expectConnectError, waitUntil } from '../support/assertions.ts';
import { adminPassword } from '../support/test-server.ts';
import {
  server,
  userA,
  userB,
  admin,
  postJson,
  jsonDetail,
  expectHygienic,
  expectHygienicError,
  expectJsonError,
  base64url,
  useSecurityServer,
} from './support.ts';

useSecurityServer();

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
      [
        'changePassword wrong current',
        () => userA.client.auth.changePassword({ currentPassword: 'nope-nope-nope', newPassword: 'another-long-password' }),
      ],
      ['changePassword too short', () => userA.client.auth.changePassword({ currentPassword: userA.password, newPassword: 'short' })],
      ['admin getUser unknown', () => admin.admin.getUser({ id: randomUUID() })],
      ['admin getUser not a uuid', () => admin.admin.getUser({ id: 'abc' })],
      [
        'admin createUser duplicate',
        () =>
          admin.admin.createUser({
            username: userA.user.username,
            email: userA.user.email,
            password: 'a-long-password-1',
            role: Role.USER,
          }),
      ],
      [
        'admin createUser duplicate email',
        () => admin.admin.createUser({ username: 'fresh-name', email: userA.user.email, password: 'a-long-password-1', role: Role.USER }),
      ],
      [
        'admin createUser invalid',
        () => admin.admin.createUser({ username: 'x', email: 'not-an-email', password: 'short', role: Role.UNSPECIFIED }),
      ],
      ['admin updateUser bad mask', () => admin.admin.updateUser({ user: { id: userB.user.id }, updateMask: { paths: ['password'] } })],
      [
        'admin updateUser unknown',
        () => admin.admin.updateUser({ user: { id: randomUUID(), email: 'a@example.com' }, updateMask: { paths: ['email'] } }),
      ],
      ['admin deleteUser wrong confirm', () => admin.admin.deleteUser({ id: userB.user.id, confirm: 'wrong' })],
      ['admin getSetting unknown', () => admin.admin.getSetting({ key: 'no.such.setting' })],
      [
        'admin updateSetting wrong type',
        () => admin.admin.updateSetting({ key: 'auth.password_min_length', value: { kind: { case: 'stringValue', value: 'twelve' } } }),
      ],
      [
        'admin updateSetting out of range',
        () => admin.admin.updateSetting({ key: 'auth.password_min_length', value: { kind: { case: 'numberValue', value: 3 } } }),
      ],
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
          const reply = await postJson(`/${service.typeName}/${method.name}`, JSON.stringify(body), {
            authorization: `Bearer ${adminToken}`,
          });
          results.push(`${method.name} ${path}: ${reply.status} ${String(reply.json.code)} ${String(reply.json.message)}`);
          expect(reply.status, `${method.name} ${path}: ${reply.text}`).toBe(400);
          expect(reply.json.code, `${method.name} ${path}`).toBe('invalid_argument');
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
    for (const body of [
      '{"username": 5, "password": "x"}',
      '{"username": ["a"], "password": "x"}',
      '[1, 2]',
      '"a string"',
      '42',
      '{"pageSize": "many"}',
    ]) {
      const path = body.includes('pageSize') ? '/yardmaster.v1.AuthService/ListApiKeys' : '/yardmaster.v1.AuthService/Login';
      const reply = await postJson(path, body, { authorization: `Bearer ${userA.client.tokens!.accessToken}` });
      expectJsonError(reply, 400, 'invalid_argument');
    }
  });

  test('unknown JSON fields -> InvalidArgument', async () => {
    const reply = await postJson(
      '/yardmaster.v1.AuthService/Login',
      JSON.stringify({ username: 'admin', password: adminPassword, isAdmin: true }),
    );
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
        'connect http/1.1': createClient(
          AuthService,
          createConnectTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: { agent } }),
        ),
        'grpc-web http/1.1': createClient(
          AuthService,
          createGrpcWebTransport({
            baseUrl: server.url,
            httpVersion: '1.1',
            useBinaryFormat: true,
            nodeOptions: { agent: new http.Agent() },
          }),
        ),
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
      expect
        .soft(next instanceof ConnectError ? `${Code[next.code]}: ${next.rawMessage}` : 'answered', 'next call on the pooled connection')
        .toBe('answered');
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
      socket.write(
        'POST /yardmaster.v1.AuthService/Login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
      );
      const chunk = Buffer.alloc(1024 * 1024, 'a');
      for (let i = 0; i < 9 && !closed; i++) {
        await new Promise<void>((resolve) =>
          socket.write(`${chunk.length.toString(16)}\r\n`, () => socket.write(chunk, () => socket.write('\r\n', () => resolve()))),
        );
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
      const error = await expectConnectError(
        () => server.client().auth.login({ username, password: 'p'.repeat(2000) }),
        Code.InvalidArgument,
      );
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
      const reply = await postJson('/yardmaster.v1.AuthService/Login', JSON.stringify({ username: 'admin', password: adminPassword }), {
        'x-request-id': insane,
      });
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
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: '{}',
      }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }),
      fetch(`${server.url}/yardmaster.v1.AuthService/Login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{',
      }),
      fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, {
        method: 'OPTIONS',
        headers: { origin: 'https://x.example.com', 'access-control-request-method': 'POST' },
      }),
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
