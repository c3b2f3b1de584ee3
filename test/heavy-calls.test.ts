/**
 * One account's heavy calls (declared `heavy` in the contract) are limited per instance,
 * so that they cannot tie up the database pool for everyone else.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import { eventually, expectConnectError, retryDelayMs } from './support/assertions.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

let server: TestServer;
let busy: TestUser;
let other: TestUser;

beforeAll(async () => {
  server = await startTestServer();
  [busy, other] = await Promise.all([server.createUser(), server.createUser()]);
});
afterAll(() => server?.close());

test('an account over its heavy-call limit gets ResourceExhausted with RetryInfo; other accounts and light calls go on', async () => {
  await server.setSetting('limits.heavy_calls_per_account', 1);
  // An Upload (heavy) that stays open until the test lets it finish.
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const bytes = new TextEncoder().encode('held open');
  const upload = busy.client.files.upload(
    (async function* () {
      yield { content: { case: 'metadata' as const, value: { directory: '/held', name: 'open.txt', size: BigInt(bytes.byteLength) } } };
      await finished;
      yield { content: { case: 'chunk' as const, value: bytes } };
    })(),
  );
  try {
    // The upload holds the slot once its row is reserved; a heavy call sent before that
    // could take the slot first and leave the upload refused.
    await eventually(
      async () => {
        expect(await server.countRows(`select count(*) as n from files where owner_id = $1 and name = 'open.txt'`, [busy.user.id])).toBe(1);
      },
      10_000,
      50,
    );
    const refused = await expectConnectError(busy.client.jobs.listJobs({}), Code.ResourceExhausted, 'TOO_MANY_HEAVY_CALLS');
    expect(retryDelayMs(refused)).toBeGreaterThan(0);
    await expectConnectError(
      busy.client.jobs.batchCreateJobs({ requests: [{ type: 'noop', name: 'refused' }] }),
      Code.ResourceExhausted,
      'TOO_MANY_HEAVY_CALLS',
    );
    expect(await server.countRows('select count(*) as n from jobs where owner_id = $1', [busy.user.id])).toBe(0);
    // Light calls of the same account, and heavy calls of another, are not affected.
    await busy.client.jobs.createJob({ type: 'noop', name: 'light' });
    await other.client.jobs.listJobs({});
  } finally {
    finish();
  }
  expect((await upload).file!.name).toBe('open.txt');
  expect((await busy.client.jobs.listJobs({})).jobs).toHaveLength(1);
});
