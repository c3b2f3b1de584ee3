/**
 * Strings PostgreSQL cannot store (NUL, lone UTF-16 surrogates) are refused at the edge
 * as InvalidArgument naming the field, in every service and in client streams; and an
 * audited call whose audit record cannot be written does not take effect.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { JobsService } from '../gen/yardmaster/v1/jobs_pb.ts';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { expectConnectError, uniqueName, violatedFields } from './support/assertions.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

let server: TestServer;
let user: TestUser;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer();
  admin = await server.adminClient();
  user = await server.createUser();
});
afterAll(() => server?.close());

async function countJobs(ownerId: string): Promise<number> {
  return server.countRows('select count(*) as n from jobs where owner_id = $1', [ownerId]);
}

async function uploadFile(client: YardmasterClient, directory: string, name: string): Promise<string> {
  const bytes = new TextEncoder().encode(`contents of ${name}`);
  const { file } = await client.files.upload(
    (async function* () {
      yield { content: { case: 'metadata' as const, value: { directory, name, size: BigInt(bytes.byteLength) } } };
      yield { content: { case: 'chunk' as const, value: bytes } };
    })(),
  );
  return file!.id;
}

async function fileExists(id: string): Promise<boolean> {
  return (await server.countRows("select count(*) as n from files where id = $1 and status = 'available'", [id])) === 1;
}

describe('strings PostgreSQL cannot hold', () => {
  test('a NUL in a job name, a label key or value, or a params value is InvalidArgument naming the field, and no job is written', async () => {
    const jobs = user.client.jobs;
    const byName = await expectConnectError(jobs.createJob({ type: 'noop', name: 'evil\0name' }), Code.InvalidArgument);
    expect(violatedFields(byName)).toEqual(['name']);
    const byLabelValue = await expectConnectError(
      jobs.createJob({ type: 'noop', name: 'ok', labels: { team: 'a\0b' } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(byLabelValue)).toEqual(['labels["team"]']);
    const byLabelKey = await expectConnectError(
      jobs.createJob({ type: 'noop', name: 'ok', labels: { 'te\0am': 'a' } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(byLabelKey)).toEqual(['labels["te\\u0000am"]']);
    const inBatch = await expectConnectError(
      jobs.batchCreateJobs({
        requests: [
          { type: 'noop', name: 'first' },
          { type: 'sleep', name: 'second', params: { seconds: 1, note: { deep: ['x', 'y\0'] } } },
        ],
      }),
      Code.InvalidArgument,
    );
    expect(violatedFields(inBatch)).toEqual(['requests[1].params["note"]["deep"][1]']);
    const byRequestId = await expectConnectError(jobs.createJob({ type: 'noop', name: 'ok', requestId: 'id\0' }), Code.InvalidArgument);
    expect(violatedFields(byRequestId)).toEqual(['request_id']);
    expect(byName.rawMessage).not.toMatch(/invalid byte sequence|0x00|SQL|insert/i);
    expect(await countJobs(user.user.id)).toBe(0);
  });

  test('filters, search text and names of other services are checked the same way', async () => {
    const search = await expectConnectError(user.client.jobs.listJobs({ filter: { search: 'x\0' } }), Code.InvalidArgument);
    expect(violatedFields(search)).toEqual(['filter.search']);
    const types = await expectConnectError(user.client.jobs.getJobStats({ filter: { types: ['noop', 'no\0op'] } }), Code.InvalidArgument);
    expect(violatedFields(types)).toEqual(['filter.types[1]']);
    const keyName = await expectConnectError(user.client.auth.createApiKey({ name: 'key\0' }), Code.InvalidArgument);
    expect(violatedFields(keyName)).toEqual(['name']);
    expect(await server.countRows("select count(*) as n from api_keys where user_id = $1 and name like 'key%'", [user.user.id])).toBe(0);
    const query = await expectConnectError(admin.admin.listUsers({ query: '\0' }), Code.InvalidArgument);
    expect(violatedFields(query)).toEqual(['query']);
    const target = await expectConnectError(admin.admin.listAuditEvents({ target: 'a\0' }), Code.InvalidArgument);
    expect(violatedFields(target)).toEqual(['target']);
    const contentType = await expectConnectError(
      user.client.files.createUpload({ directory: '/d', name: 'f.txt', size: 3n, contentType: 'text/plain\0' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(contentType)).toEqual(['content_type']);
  });

  test('a lone UTF-16 surrogate sent in JSON is InvalidArgument, also inside params', async () => {
    const { secret } = await user.client.auth.createApiKey({ name: uniqueName('json') });
    const bearer: Interceptor = (next) => (req) => {
      req.header.set('authorization', `Bearer ${secret}`);
      return next(req);
    };
    const jobs = createClient(
      JobsService,
      createConnectTransport({ baseUrl: server.url, httpVersion: '1.1', useBinaryFormat: false, interceptors: [bearer] }),
    );
    // protobuf's JSON parser refuses it in string fields; Struct values are ours to check.
    await expectConnectError(jobs.createJob({ type: 'noop', name: 'half \ud800 pair' }), Code.InvalidArgument);
    const inParams = await expectConnectError(
      jobs.createJob({ type: 'sleep', name: 'ok', params: { seconds: 1, note: 'x\udc00' } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(inParams)).toEqual(['params["note"]']);
    expect(await countJobs(user.user.id)).toBe(0);
  });

  test('the metadata of an Upload stream is checked; its byte chunks are not strings', async () => {
    const error = await expectConnectError(uploadFile(user.client, '/up', 'bad\0name.txt'), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['metadata.name']);
    expect(await server.countRows('select count(*) as n from files where owner_id = $1', [user.user.id])).toBe(0);
    const id = await uploadFile(user.client, '/up', 'zeros.bin');
    expect(await fileExists(id)).toBe(true);
  });

  test('DeleteDirectory of "/evade\\0" is refused and the directory stays', async () => {
    const id = await uploadFile(user.client, '/evade', 'kept.txt');
    const error = await expectConnectError(
      user.client.files.deleteDirectory({ directory: '/evade\0', confirm: '/evade\0' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['directory', 'confirm']);
    expect(await fileExists(id)).toBe(true);
  });
});

describe('audited calls without an audit record', () => {
  test('a call whose audit record cannot be written is refused before it takes effect', async () => {
    const id = await uploadFile(user.client, '/doomed', 'kept.txt');
    // A real constraint of the database that refuses exactly this call's audit record.
    await server.query(`alter table audit_events add constraint refuse_doomed check (target is distinct from '/doomed')`);
    try {
      await expectConnectError(
        user.client.files.deleteDirectory({ directory: '/doomed', confirm: '/doomed' }),
        Code.Unavailable,
        'AUDIT_LOG_UNAVAILABLE',
      );
      expect(await fileExists(id)).toBe(true);
    } finally {
      await server.query('alter table audit_events drop constraint refuse_doomed');
    }
    const { deletedFiles } = await user.client.files.deleteDirectory({ directory: '/doomed', confirm: '/doomed' });
    expect(deletedFiles).toBe(1n);
    const rows = await server.query<{ outcome: string; error_code: string | null }>(
      "select outcome, error_code from audit_events where action = 'yardmaster.v1.FilesService.DeleteDirectory' and target = '/doomed'",
    );
    expect(rows).toEqual([{ outcome: 'success', error_code: null }]);
  });
});
