/**
 * Two server instances on one database: settings and signing keys seen by both (no server of the file's own).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { eventually, expectConnectError, randomHex, reasonOf } from '../support/assertions.ts';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { service, requestId, withRequestId, jsonValue, plain, jwtHeader, auditRowsByRequestId, jwks } from './support.ts';

// ---------------------------------------------------------------------------------------
// Two instances on one database: settings and signing keys travel between them
// ---------------------------------------------------------------------------------------

describe('two instances on one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let adminA: YardmasterClient;
  let adminB: YardmasterClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    a = await startTestServer({ database });
    b = await startTestServer({ database });
    adminA = await a.adminClient();
    adminB = await b.adminClient();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  test('a setting changed on A is visible on B within one second and takes effect there', async () => {
    const register = (server: TestServer) => {
      const name = `reg-${randomHex()}`;
      return server.client().auth.register({ username: name, email: `${name}@example.com`, password: 'a-long-enough-password' });
    };
    const closed = await expectConnectError(register(b), Code.PermissionDenied);
    expect(reasonOf(closed)).toBe('REGISTRATION_CLOSED');

    await adminA.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(true) });
    const changedAt = Date.now();
    const seen = await eventually(async () => {
      const { setting } = await adminB.admin.getSetting({ key: 'auth.open_registration' });
      expect(plain(setting!.value)).toBe(true);
      return setting!;
    }, 1000);
    expect(Date.now() - changedAt).toBeLessThanOrEqual(1000);
    expect(seen.updatedBy).toBe('admin');
    expect(seen.updateTime).toBeDefined();

    const registered = await register(b);
    expect(registered.user!.role).toBe(Role.USER);
    expect(await a.countRows('select count(*) as n from users where id = $1', [registered.user!.id])).toBe(1);

    // And back: restoring the default on A closes registration on B.
    await adminA.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(null) });
    const restoredAt = Date.now();
    await eventually(async () => {
      const { setting } = await adminB.admin.getSetting({ key: 'auth.open_registration' });
      expect(plain(setting!.value)).toBe(false);
      expect(setting!.updatedBy).toBe('');
    }, 1000);
    expect(Date.now() - restoredAt).toBeLessThanOrEqual(1000);
    expect(reasonOf(await expectConnectError(register(b), Code.PermissionDenied))).toBe('REGISTRATION_CLOSED');
  });

  test('RotateSigningKey: old tokens keep working, new ones carry the new kid, the JWKS lists both, and B accepts the new key', async () => {
    const oldTokenA = adminA.tokens!.accessToken;
    const oldTokenB = adminB.tokens!.accessToken;
    const oldKid = jwtHeader(oldTokenA).kid;
    expect(jwtHeader(oldTokenA).alg).toBe('EdDSA');
    expect(jwtHeader(oldTokenB).kid).toBe(oldKid);
    expect((await jwks(a)).keys.map((k) => k.kid)).toEqual([oldKid]);

    const rid = requestId('rotate');
    const rotated = await adminA.admin.rotateSigningKey({}, withRequestId(rid));
    expect(rotated.keyId).not.toBe('');
    expect(rotated.keyId).not.toBe(oldKid);
    expect(rotated.previousKeyId).toBe(oldKid);

    const keys = await a.query<{ id: string; retired_at: Date | null }>('select id, retired_at from signing_keys order by created_at');
    expect(keys.map((k) => k.id)).toEqual([oldKid, rotated.keyId]);
    expect(keys[0]!.retired_at).not.toBeNull();
    expect(keys[1]!.retired_at).toBeNull();

    // Tokens signed before the rotation still work, on both instances.
    for (const server of [a, b]) {
      for (const token of [oldTokenA, oldTokenB]) {
        expect((await server.bearerClient(token).admin.listUsers({ query: 'admin' })).users.length).toBeGreaterThan(0);
      }
    }

    // New logins on A are signed with the new key, and B accepts them at once.
    const newLogin = await a.signIn('admin', adminPassword);
    const newToken = newLogin.tokens!.accessToken;
    expect(jwtHeader(newToken).kid).toBe(rotated.keyId);
    expect((await a.bearerClient(newToken).auth.getMe({})).user!.username).toBe('admin');
    expect((await b.bearerClient(newToken).auth.getMe({})).user!.username).toBe('admin');
    expect((await b.bearerClient(newToken).admin.getMetrics({})).usersTotal).toBeGreaterThan(0n);

    // The JWKS of both instances lists both public keys, and nothing private.
    const checkJwks = async (server: TestServer) => {
      const { keys: published } = await jwks(server);
      expect(published.map((k) => k.kid).sort()).toEqual([oldKid, rotated.keyId].sort());
      for (const key of published) {
        expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
        expect(key.d).toBeUndefined();
        expect(typeof key.x).toBe('string');
      }
    };
    await checkJwks(a);
    await eventually(() => checkJwks(b), 1000);

    // B signs with the new key too, within a second.
    await eventually(async () => {
      const login = await b.client().auth.login({ username: 'admin', password: adminPassword });
      expect(jwtHeader(login.accessToken).kid).toBe(rotated.keyId);
    }, 1000);

    expect(await auditRowsByRequestId(a, rid)).toEqual([
      expect.objectContaining({ action: `${service}.RotateSigningKey`, outcome: 'success', target: null, actor_username: 'admin' }),
    ]);

    // A second rotation, from B this time: every key so far still verifies.
    const again = await adminB.admin.rotateSigningKey({});
    expect(again.previousKeyId).toBe(rotated.keyId);
    expect(new Set([oldKid, rotated.keyId, again.keyId]).size).toBe(3);
    for (const token of [oldTokenA, newToken]) {
      await a.bearerClient(token).auth.getMe({});
      await b.bearerClient(token).auth.getMe({});
    }
    const newest = await a.signIn('admin', adminPassword);
    await eventually(async () => {
      const login = await a.client().auth.login({ username: 'admin', password: adminPassword });
      expect(jwtHeader(login.accessToken).kid).toBe(again.keyId);
    }, 1000);
    await a.bearerClient(newest.tokens!.accessToken).auth.getMe({});
    expect((await jwks(a)).keys).toHaveLength(3);
  });
});
