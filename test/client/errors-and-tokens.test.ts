/**
 * The typed client's errors (YardmasterError: code, reason, metadata, field violations,
 * retry delay) and token storage (a 0600 file; a storage shared by two clients, as two
 * browser tabs share localStorage, so that a rotated refresh token is never spent twice).
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  createYardmasterClient,
  fileTokenStorage,
  localStorageTokenStorage,
  RetryInfoSchema,
  YardmasterError,
  type SessionTokens,
} from '../../clients/ts/src/node.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

let server: TestServer;
let directory: string;

beforeAll(async () => {
  server = await startTestServer();
  directory = await mkdtemp(path.join(tmpdir(), 'yardmaster-tokens-'));
});
afterAll(async () => {
  await server?.close();
  if (directory) await rm(directory, { recursive: true, force: true });
});

/** The typed error a call failed with; fails the test when the call succeeds. */
async function failure(call: Promise<unknown>): Promise<YardmasterError> {
  try {
    await call;
  } catch (error) {
    return YardmasterError.from(error);
  }
  throw new Error('expected the call to fail');
}

/** A Storage (the browser's localStorage interface) in memory. */
function memoryStorage(): Storage {
  const items = new Map<string, string>();
  return {
    get length() {
      return items.size;
    },
    clear: () => items.clear(),
    getItem: (key) => items.get(key) ?? null,
    key: (index) => [...items.keys()][index] ?? null,
    removeItem: (key) => void items.delete(key),
    setItem: (key, value) => void items.set(key, value),
  };
}

describe('YardmasterError', () => {
  test('exposes the code, the field violations of an InvalidArgument and the reason of a refusal', async () => {
    const { client } = await server.createUser();
    const invalid = await failure(client.jobs.createJob({ type: 'sleep', params: { seconds: 'soon' } }));
    expect(invalid).toBeInstanceOf(ConnectError);
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.codeName).toBe('InvalidArgument');
    expect(invalid.fieldViolations.map((violation) => violation.field)).toContain('params.seconds');
    expect(invalid.fieldViolations[0]!.description).not.toBe('');

    const reused = await failure(server.client().auth.refresh({ refreshToken: 'not-a-token' }));
    expect(reused.code).toBe(Code.Unauthenticated);

    const user = await server.createUser();
    const failures: YardmasterError[] = [];
    for (let i = 0; i < 8; i++) {
      failures.push(await failure(server.client().login(user.user.username, 'wrong-password-123')));
    }
    const limited = failures.find((each) => each.code === Code.ResourceExhausted);
    expect(limited, failures.map((each) => each.codeName).join(', ')).toBeDefined();
    expect(limited!.retryAfterMs).toBeGreaterThan(0);
    expect(limited!.reason).toBeDefined();
  });

  test('is made from any thrown value; an outgoing RetryInfo is read too', () => {
    const local = new ConnectError('slow down', Code.ResourceExhausted, undefined, [
      { desc: RetryInfoSchema, value: { retryDelay: { seconds: 2n, nanos: 500_000_000 } } },
    ]);
    expect(YardmasterError.from(local).retryAfterMs).toBe(2500);
    expect(YardmasterError.from(new Error('boom')).code).toBe(Code.Unknown);
    expect(YardmasterError.from(new DOMException('stop', 'AbortError')).code).toBe(Code.Canceled);
    const typed = YardmasterError.from(local);
    expect(YardmasterError.from(typed)).toBe(typed);
    expect(local instanceof YardmasterError).toBe(false);
  });
});

describe('token storage', () => {
  test('a file storage keeps the session between runs in a 0600 file and removes it on logout', async () => {
    const { user, password } = await server.createUser();
    const file = path.join(directory, 'nested', 'session.json');
    const first = createYardmasterClient({ baseUrl: server.url, tokenStorage: fileTokenStorage(file) });
    await first.login(user.username, password);
    first.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);

    const second = createYardmasterClient({ baseUrl: server.url, tokenStorage: fileTokenStorage(file) });
    expect((await second.auth.getMe({})).user?.id).toBe(user.id);
    await second.logout();
    await expect(stat(file)).rejects.toThrow();
    second.close();
  });

  test('two clients sharing one storage (two tabs): after one refreshes, the other takes the new pair instead of spending the old refresh token', async () => {
    const { user, password } = await server.createUser();
    // No grace interval: presenting a rotated refresh token ends the whole session.
    await server.setSetting('auth.refresh_reuse_grace', '0s');
    try {
      const seed = server.client();
      await seed.login(user.username, password);
      const expiring: SessionTokens = { ...seed.tokens!, accessTokenExpiresAt: new Date(Date.now() + 1000) };
      const storage = memoryStorage();
      const tabA = createYardmasterClient({ baseUrl: server.url, tokens: expiring, tokenStorage: localStorageTokenStorage({ storage }) });
      const tabB = createYardmasterClient({ baseUrl: server.url, tokenStorage: localStorageTokenStorage({ storage }) });
      expect(tabB.tokens?.refreshToken).toBe(expiring.refreshToken);

      // Tab A's access token is about to expire: it refreshes, and the stored pair rotates.
      expect((await tabA.auth.getMe({})).user?.id).toBe(user.id);
      const rotated = tabA.tokens!.refreshToken;
      expect(rotated).not.toBe(expiring.refreshToken);
      expect(JSON.parse(storage.getItem('yardmaster.session')!).refreshToken).toBe(rotated);

      // Tab B still holds the old pair, also expiring: before refreshing it reads the storage and takes the rotated pair.
      expect((await tabB.auth.getMe({})).user?.id).toBe(user.id);
      expect(tabB.tokens?.refreshToken).toBe(rotated);
      // Nothing was reused: the session lives on in both tabs.
      expect((await tabA.auth.getMe({})).user?.id).toBe(user.id);
      for (const tab of [tabA, tabB]) tab.close();
    } finally {
      await server.setSetting('auth.refresh_reuse_grace', null);
    }
  });
});
