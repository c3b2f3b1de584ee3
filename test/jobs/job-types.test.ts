/**
 * Job types for external workers: AdminService.CreateJobType / UpdateJobType /
 * DeleteJobType, JobsService.ListJobTypes, CreateJob params checked against a declared
 * JSON Schema, the declared type's queue, and a second instance learning of a type at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { JsonObject } from '@bufbuild/protobuf';
import { durationFromMs, durationMs } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { JobTypeRuntime } from '../../gen/yardmaster/v1/job_types_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually, expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const adminService = 'yardmaster.v1.AdminService';

/** A schema a simulation code might take: a mesh file name, a step count, an optional solver. */
const simulationSchema = {
  type: 'object',
  properties: {
    mesh: { type: 'string', minLength: 1 },
    steps: { type: 'integer', minimum: 1, maximum: 1000 },
    solver: { enum: ['cg', 'gmres'], default: 'cg' },
  },
  required: ['mesh', 'steps'],
  additionalProperties: false,
};

let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer();
  admin = await server.adminClient();
});
afterAll(() => server?.close());

function typeName(label: string): string {
  return `${label}-${randomHex()}`;
}

async function declare(name: string, extra: Record<string, unknown> = {}) {
  const { jobType } = await admin.admin.createJobType({
    jobType: { name, description: 'runs elsewhere', paramsSchema: simulationSchema, ...extra },
  });
  return jobType!;
}

const declarations = (name: string) => server.countRows('select count(*)::int as n from job_type_declarations where name = $1', [name]);
const jobsOfType = (name: string) => server.countRows('select count(*)::int as n from jobs where type = $1', [name]);
const queueEntriesOfType = (name: string) => server.countRows('select count(*)::int as n from pgboss.job where name = $1', [name]);
const pgBossQueues = (name: string) => server.countRows('select count(*)::int as n from pgboss.queue where name = $1', [name]);
const auditRows = (action: string, target: string) =>
  server.query<{ actor_username: string; outcome: string }>(
    'select actor_username, outcome from audit_events where action = $1 and target = $2',
    [`${adminService}.${action}`, target],
  );

describe('ListJobTypes', () => {
  test('lists the in-process types with their params as JSON Schema, for any signed-in account', async () => {
    const { client } = await server.createUser();
    const { jobTypes } = await client.jobs.listJobTypes({});
    const sleepType = jobTypes.find((type) => type.name === 'sleep')!;
    expect(sleepType.runtime).toBe(JobTypeRuntime.IN_PROCESS);
    expect(sleepType.paramsSchema).toMatchObject({
      type: 'object',
      properties: { seconds: { type: 'number', minimum: 0, maximum: 3600 }, fail: { type: 'boolean', default: false } },
      required: ['seconds'],
      additionalProperties: false,
    });
    expect(durationMs(sleepType.timeout!)).toBe(65 * 60_000);
    expect(sleepType.lease).toBeUndefined();
    expect(jobTypes.map((type) => type.name)).toEqual([...jobTypes.map((type) => type.name)].sort());
    await expectConnectError(server.client().jobs.listJobTypes({}), Code.Unauthenticated);
  });
});

describe('CreateJobType, UpdateJobType, DeleteJobType', () => {
  test('an admin declares, changes and removes a type: listed, queued for, audited', async () => {
    const name = typeName('simulate');
    const created = await declare(name, { timeout: durationFromMs(600_000), lease: durationFromMs(30_000), retryBackoff: true });
    expect(created).toMatchObject({ name, runtime: JobTypeRuntime.EXTERNAL, maxAttempts: 3, version: 1, retryBackoff: true });
    expect(created.paramsSchema).toEqual(simulationSchema);
    expect(durationMs(created.timeout!)).toBe(600_000);
    expect(durationMs(created.lease!)).toBe(30_000);
    expect(durationMs(created.retryDelay!)).toBe(5000);
    expect(await pgBossQueues(name)).toBe(1);

    const { client } = await server.createUser();
    const listed = (await client.jobs.listJobTypes({})).jobTypes.find((type) => type.name === name);
    expect(listed).toMatchObject({ name, runtime: JobTypeRuntime.EXTERNAL, version: 1 });

    const { jobType: updated } = await admin.admin.updateJobType({
      jobType: { name, description: 'runs on the GPU box', maxAttempts: 5 },
      updateMask: { paths: ['description', 'max_attempts'] },
    });
    expect(updated).toMatchObject({ description: 'runs on the GPU box', maxAttempts: 5, version: 2 });
    expect(durationMs(updated!.lease!)).toBe(30_000);
    const [queueRow] = await server.query<{ retry_limit: number }>('select retry_limit from pgboss.queue where name = $1', [name]);
    expect(queueRow!.retry_limit).toBe(4);

    await admin.admin.deleteJobType({ name });
    expect(await declarations(name)).toBe(0);
    expect(await pgBossQueues(name)).toBe(0);
    expect((await client.jobs.listJobTypes({})).jobTypes.map((type) => type.name)).not.toContain(name);

    for (const action of ['CreateJobType', 'UpdateJobType', 'DeleteJobType']) {
      expect(await auditRows(action, name)).toEqual([{ actor_username: 'admin', outcome: 'success' }]);
    }
  });

  test('a user may not declare, change or remove a type, and nothing is written', async () => {
    const name = typeName('refused');
    const { client } = await server.createUser();
    await expectConnectError(client.admin.createJobType({ jobType: { name } }), Code.PermissionDenied);
    expect(await declarations(name)).toBe(0);
    await declare(name);
    await expectConnectError(
      client.admin.updateJobType({ jobType: { name, description: 'mine now' }, updateMask: { paths: ['description'] } }),
      Code.PermissionDenied,
    );
    await expectConnectError(client.admin.deleteJobType({ name }), Code.PermissionDenied);
    const [row] = await server.query<{ description: string; version: number }>(
      'select description, version from job_type_declarations where name = $1',
      [name],
    );
    expect(row).toEqual({ description: 'runs elsewhere', version: 1 });
  });

  test('an invalid JSON Schema is InvalidArgument naming job_type.params_schema, and nothing is written', async () => {
    const name = typeName('badschema');
    const invalidSchemas: JsonObject[] = [
      { type: 'object', properties: { steps: { type: 'integr' } } },
      { type: 'object', properties: { steps: { type: 'integer', minimun: 1 } } },
      { type: 'object', properties: { when: { type: 'string', format: 'no-such-format' } } },
      { type: 'string' },
    ];
    for (const paramsSchema of invalidSchemas) {
      const error = await expectConnectError(admin.admin.createJobType({ jobType: { name, paramsSchema } }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['job_type.params_schema']);
    }
    expect(await declarations(name)).toBe(0);
    expect(await pgBossQueues(name)).toBe(0);

    await declare(name);
    const error = await expectConnectError(
      admin.admin.updateJobType({
        jobType: { name, paramsSchema: { type: 'object', required: 'mesh' } },
        updateMask: { paths: ['params_schema'] },
      }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['job_type.params_schema']);
    const [row] = await server.query<{ version: number }>('select version from job_type_declarations where name = $1', [name]);
    expect(row!.version).toBe(1);
  });

  test('a name clash is AlreadyExists; bad names, policies and masks are InvalidArgument; built-ins cannot change', async () => {
    await expectConnectError(admin.admin.createJobType({ jobType: { name: 'sleep' } }), Code.AlreadyExists);
    const name = typeName('twice');
    await declare(name);
    await expectConnectError(admin.admin.createJobType({ jobType: { name } }), Code.AlreadyExists);
    expect(
      violatedFields(await expectConnectError(admin.admin.createJobType({ jobType: { name: 'Bad Name' } }), Code.InvalidArgument)),
    ).toEqual(['job_type.name']);
    const policyError = await expectConnectError(
      admin.admin.createJobType({
        jobType: { name: typeName('policy'), maxAttempts: 21, lease: durationFromMs(1000), minInputFiles: 2, maxInputFiles: 1 },
      }),
      Code.InvalidArgument,
    );
    expect(violatedFields(policyError).sort()).toEqual(['job_type.lease', 'job_type.max_attempts', 'job_type.min_input_files']);
    const maskError = await expectConnectError(
      admin.admin.updateJobType({ jobType: { name, version: 9 }, updateMask: { paths: ['version'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(maskError)).toEqual(['update_mask']);
    await expectConnectError(
      admin.admin.updateJobType({ jobType: { name: 'sleep', description: 'x' }, updateMask: { paths: ['description'] } }),
      Code.FailedPrecondition,
      'JOB_TYPE_BUILT_IN',
    );
    await expectConnectError(admin.admin.deleteJobType({ name: 'sleep' }), Code.FailedPrecondition, 'JOB_TYPE_BUILT_IN');
    await expectConnectError(admin.admin.deleteJobType({ name: typeName('never') }), Code.NotFound);
  });
});

describe('jobs of a declared type', () => {
  test('params are checked against the schema before anything is queued, each violation named', async () => {
    const name = typeName('checked');
    await declare(name);
    const { client } = await server.createUser();
    const error = await expectConnectError(client.jobs.createJob({ type: name, params: { steps: 0, extra: true } }), Code.InvalidArgument);
    expect(violatedFields(error).sort()).toEqual(['params.extra', 'params.mesh', 'params.steps']);
    const typeError = await expectConnectError(
      client.jobs.createJob({ type: name, params: { mesh: 'wing.msh', steps: 'ten' } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(typeError)).toEqual(['params.steps']);
    // The type takes no input files (max_input_files 0, the default).
    const filesError = await expectConnectError(
      client.jobs.createJob({ type: name, params: { mesh: 'a', steps: 1 }, inputFileIds: ['01900000-0000-7000-8000-000000000000'] }),
      Code.InvalidArgument,
    );
    expect(violatedFields(filesError)).toEqual(['input_file_ids']);
    const batchError = await expectConnectError(
      client.jobs.batchCreateJobs({
        requests: [
          { type: name, params: { mesh: 'a', steps: 1 } },
          { type: name, params: { mesh: '', steps: 1 } },
        ],
      }),
      Code.InvalidArgument,
    );
    expect(violatedFields(batchError)).toEqual(['requests[1].params.mesh']);
    expect(await jobsOfType(name)).toBe(0);
    expect(await queueEntriesOfType(name)).toBe(0);

    const { job } = await client.jobs.createJob({ type: name, params: { mesh: 'wing.msh', steps: 10 } });
    // The schema's default is filled in, as the in-process types' defaults are.
    expect(job!.params).toEqual({ mesh: 'wing.msh', steps: 10, solver: 'cg' });
    expect(job!.maxAttempts).toBe(3);
    await expectConnectError(client.jobs.createJob({ type: typeName('unknown'), params: {} }), Code.InvalidArgument);
  });

  test('a job waits QUEUED for an external worker, is listed by QueueService, and keeps its type from being deleted', async () => {
    const name = typeName('waiting');
    await declare(name);
    const { client } = await server.createUser();
    const { job } = await client.jobs.createJob({ type: name, params: { mesh: 'hull.msh', steps: 3 } });
    // The in-process runner polls every 2 s: give it more than one chance to (wrongly) take the job.
    await sleep(2500);
    expect((await client.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.QUEUED);
    const [entry] = await server.query<{ state: string }>('select state from pgboss.job where name = $1', [name]);
    expect(entry!.state).toBe('created');

    const queue = (await admin.queue.listQueues({})).queues.find((listed) => listed.name === name);
    expect(queue).toMatchObject({ name, queued: 1n, running: 0n, concurrency: 0 });
    expect((await admin.queue.listQueuedJobs({ queue: name })).jobs.map((queued) => queued.id)).toEqual([job!.id]);

    await expectConnectError(admin.admin.deleteJobType({ name }), Code.FailedPrecondition, 'JOB_TYPE_IN_USE');
    expect(await declarations(name)).toBe(1);

    await client.jobs.cancelJob({ id: job!.id });
    await admin.admin.deleteJobType({ name });
    expect(await declarations(name)).toBe(0);
    expect((await admin.queue.listQueues({})).queues.map((listed) => listed.name)).not.toContain(name);
    await expectConnectError(client.jobs.createJob({ type: name, params: { mesh: 'hull.msh', steps: 3 } }), Code.InvalidArgument);
    await expectConnectError(client.jobs.retryJob({ id: job!.id }), Code.FailedPrecondition, 'JOB_TYPE_GONE');
  });

  test('a second instance knows a new or changed type at once', async () => {
    const second = await startTestServer({ database: { url: server.databaseUrl, name: '', drop: async () => {} } });
    try {
      const adminOnSecond = await second.adminClient();
      const name = typeName('shared');
      await declare(name);
      // NOTIFY reaches the other instance in milliseconds; no reload interval is involved.
      await eventually(async () => {
        expect((await adminOnSecond.jobs.listJobTypes({})).jobTypes.map((type) => type.name)).toContain(name);
      }, 500);
      const { job } = await adminOnSecond.jobs.createJob({ type: name, params: { mesh: 'a.msh', steps: 1 } });
      expect(job!.status).toBe(JobStatus.QUEUED);

      await admin.admin.updateJobType({
        jobType: {
          name,
          paramsSchema: { ...simulationSchema, properties: { ...simulationSchema.properties, steps: { type: 'integer', maximum: 5 } } },
        },
        updateMask: { paths: ['params_schema'] },
      });
      await eventually(async () => {
        const error = await expectConnectError(
          adminOnSecond.jobs.createJob({ type: name, params: { mesh: 'a.msh', steps: 6 } }),
          Code.InvalidArgument,
        );
        expect(violatedFields(error)).toEqual(['params.steps']);
      }, 500);
    } finally {
      await second.close();
    }
  });
});
