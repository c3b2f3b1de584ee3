/**
 * Bearer credentials that must not work, public methods with stale credentials, secrets at rest and login timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import { importJWK, generateKeyPair, SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, type JWK, type JWTPayload } from 'jose';
import { ErrorInfoSchema, Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { connectErrorOf, expectConnectError } from '../support/assertions.ts';
import { server, userA, userB, admin, postJson, expectHygienicError, expectJsonError, base64url, useSecurityServer } from './support.ts';

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
  return { sub: payload.sub!, sid: payload.sid as string, role: payload.role as string };
}

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
      expect(claims.role).toBe('user');
      claims.role = 'admin';
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

useSecurityServer();

describe('bearer credentials that must not work', () => {
  test("sanity: user A's real token works on GetMe over raw JSON", async () => {
    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { authorization: `Bearer ${userA.client.tokens!.accessToken}` });
    expect(reply.status, reply.text).toBe(200);
    expect((reply.json.user as { id: string }).id).toBe(userA.user.id);
  });

  test.each(badCredentials)('$name -> Unauthenticated', async ({ header, reason, bearer }) => {
    const authorization = await header();

    const reply = await postJson('/yardmaster.v1.AuthService/GetMe', '{}', { authorization });
    expectJsonError(reply, 401, 'unauthenticated', reason);
    expect(reply.json.user).toBeUndefined();

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
      [
        'lives longer than this server issues tokens for',
        signWithServerKey(claimsOfA(), { issuedAt: now, expiresAt: now + 10 * 365 * 86_400 }),
      ],
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
      expect(reply.json.accessToken).toEqual(expect.any(String));
      expect((reply.json.user as { id: string }).id).toBe(userA.user.id);
    }
    const typed = await server.authClient({ authorization: 'garbage' }).login({ username: userA.user.username, password: userA.password });
    expect(typed.user?.id).toBe(userA.user.id);
  });

  test('Login succeeds with an expired access token', async () => {
    const { sub, sid, role } = claimsOfA();
    const now = Math.floor(Date.now() / 1000);
    const expired = await signWithServerKey({ sub, sid, role }, { issuedAt: now - 7200, expiresAt: now - 3600 });
    const response = await server
      .authClient({ authorization: `Bearer ${expired}` })
      .login({ username: userA.user.username, password: userA.password });
    expect(response.accessToken).not.toBe('');
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
    await server
      .client({ tokens: { accessToken: refreshed.accessToken, refreshToken: refreshed.refreshToken, accessTokenExpiresAt: undefined } })
      .auth.changePassword({
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
    expect(ratio, `unknown ${median(unknown).toFixed(1)} ms vs wrong password ${median(wrongPassword).toFixed(1)} ms`).toBeGreaterThan(
      1 / 3,
    );
    expect(ratio).toBeLessThan(3);

    // And the replies are the same.
    const a = await connectErrorOf(() => anonymous.auth.login({ username: 'nobody-at-all', password: 'definitely-wrong-password' }));
    const b = await connectErrorOf(() => anonymous.auth.login({ username: userB.user.username, password: 'definitely-wrong-password' }));
    expect(a.rawMessage).toBe(b.rawMessage);
    expect(a.findDetails(ErrorInfoSchema)[0]?.reason).toBe(b.findDetails(ErrorInfoSchema)[0]?.reason);
  });
});
