import { defineEntity, p } from '@mikro-orm/core';
import { User } from '../auth/entities.ts';

export const jobStatuses = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatusName = (typeof jobStatuses)[number];
export const finalJobStatuses: readonly JobStatusName[] = ['succeeded', 'failed', 'cancelled'];

const now = () => new Date();

const JobSchema = defineEntity({
  name: 'Job',
  tableName: 'jobs',
  // A status change is never a HOT update, so it adds an entry to every index a row
  // belongs to: the status indexes are partial (a row is in those of its state only).
  indexes: [
    { properties: ['owner', 'id'] },
    {
      name: 'jobs_queued',
      expression: `create index "jobs_queued" on "jobs" ("type", "priority", "queued_at") where "status" = 'queued'`,
    },
    {
      name: 'jobs_unfinished',
      expression: `create index "jobs_unfinished" on "jobs" ("type") where "status" in ('queued', 'running')`,
    },
    {
      name: 'jobs_finished_at',
      expression: `create index "jobs_finished_at" on "jobs" ("finished_at") where "finished_at" is not null`,
    },
  ],
  uniques: [
    {
      name: 'jobs_owner_id_request_id_unique',
      expression: `create unique index "jobs_owner_id_request_id_unique" on "jobs" ("owner_id", "request_id") where "request_id" is not null`,
    },
  ],
  properties: {
    id: p.uuid().primary(),
    owner: () => p.manyToOne(User).mapToPk().deleteRule('cascade'),
    /** The job type, which is also its queue's name. */
    type: p.string().length(64),
    name: p.string().length(200),
    params: p.json<Record<string, unknown>>(),
    labels: p.json<Record<string, string>>(),
    priority: p.integer(),
    status: p.enum(jobStatuses),
    progressPercent: p.integer().default(0),
    progressMessage: p.string().length(500).default(''),
    /** Attempts started so far. */
    attempt: p.integer().default(0),
    maxAttempts: p.integer(),
    inputFileIds: p.json<string[]>(),
    outputFileIds: p.json<string[]>(),
    result: p.json<Record<string, unknown>>().nullable(),
    errorMessage: p.text().nullable(),
    errorCode: p.string().length(64).nullable(),
    createdAt: p.datetime().onCreate(now),
    startedAt: p.datetime().nullable(),
    finishedAt: p.datetime().nullable(),
    updatedAt: p.datetime().onCreate(now),
    runAfter: p.datetime().nullable(),
    /** When the current queue entry was made: pg-boss runs equal priorities oldest entry first. */
    queuedAt: p.datetime().nullable(),
    cancelRequested: p.boolean().default(false),
    cancelReason: p.string().length(500).nullable(),
    abandoned: p.boolean().default(false),
    /** Idempotency key of the CreateJob call (AIP-155), cleared after 24 hours. */
    requestId: p.string().length(128).nullable(),
    /** pg-boss id of the queue entry of the current series of attempts. */
    queueJobId: p.uuid().nullable(),
    /** pg-boss's retry count of that entry when the running attempt started (tells a redelivery from a duplicate). */
    queueRetryCount: p.integer().nullable(),
    /** Instance (or external worker) running the current attempt. */
    workerId: p.string().length(128).nullable(),
    /** Incremented by every change, so that watchers can drop states they have already seen. */
    version: p.integer().default(1),
    /** Log lines written so far: the next line's number is logCount + 1. */
    logCount: p.integer().default(0),
  },
});
export class Job extends JobSchema.class {}
JobSchema.setClass(Job);

/**
 * What a job's text search matches (see jobSearchText), apart from the row so that the
 * status changes of a job, which rewrite every index entry of its row, leave the trigram
 * index alone: written when a job is created and when its name or labels change.
 */
const JobSearchSchema = defineEntity({
  name: 'JobSearch',
  tableName: 'job_search',
  indexes: [
    {
      name: 'job_search_text_trgm',
      expression: 'create index "job_search_text_trgm" on "job_search" using gin ("search_text" gin_trgm_ops)',
    },
  ],
  properties: {
    job: () => p.oneToOne(Job).mapToPk().owner().primary().deleteRule('cascade'),
    /** Lower-cased name, labels and params, for substring search. */
    searchText: p.text(),
  },
});
export class JobSearch extends JobSearchSchema.class {}
JobSearchSchema.setClass(JobSearch);

export const logLevels = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevelName = (typeof logLevels)[number];

const JobLogLineSchema = defineEntity({
  name: 'JobLogLine',
  tableName: 'job_log_lines',
  properties: {
    job: () => p.manyToOne(Job).mapToPk().deleteRule('cascade').primary(),
    sequence: p.integer().primary(),
    createdAt: p.datetime(),
    level: p.enum(logLevels),
    message: p.text(),
    attempt: p.integer(),
  },
});
export class JobLogLine extends JobLogLineSchema.class {}
JobLogLineSchema.setClass(JobLogLine);

/**
 * A job type an admin declared for external workers. Every instance holds them all in
 * memory (see DeclaredJobTypes) and reloads on NOTIFY; `version` names the schema
 * compiled for validation, so a change is picked up everywhere at once.
 */
const JobTypeDeclarationSchema = defineEntity({
  name: 'JobTypeDeclaration',
  tableName: 'job_type_declarations',
  properties: {
    name: p.string().length(64).primary(),
    description: p.string().length(2000),
    paramsSchema: p.json<Record<string, unknown>>(),
    maxAttempts: p.integer(),
    timeoutMs: p.integer(),
    leaseMs: p.integer(),
    retryDelayMs: p.integer(),
    retryBackoff: p.boolean(),
    retryDelayMaxMs: p.integer(),
    minInputFiles: p.integer(),
    maxInputFiles: p.integer(),
    version: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    createdBy: p.string().length(64),
    updatedBy: p.string().length(64),
  },
});
export class JobTypeDeclaration extends JobTypeDeclarationSchema.class {}
JobTypeDeclarationSchema.setClass(JobTypeDeclaration);

/**
 * An external worker's claim on one attempt of a job: who holds it (the worker's id and
 * the account it calls as), until when, and which queue entry to settle when it ends.
 * A lease is active until `endedAt` is set; one whose `expiresAt` passed is ended by the
 * lease sweeper (see JobLeases), which retries or fails the attempt. Ended leases stay
 * with their job so that a late call about them is told LEASE_EXPIRED, not NotFound.
 */
const JobLeaseSchema = defineEntity({
  name: 'JobLease',
  tableName: 'job_leases',
  indexes: [
    {
      name: 'job_leases_active_expiry',
      expression: 'create index "job_leases_active_expiry" on "job_leases" ("expires_at") where "ended_at" is null',
    },
    {
      name: 'job_leases_active_worker',
      expression: 'create index "job_leases_active_worker" on "job_leases" ("worker_id") where "ended_at" is null',
    },
  ],
  properties: {
    id: p.uuid().primary(),
    // A retried job numbers its attempts from 1 again, so (job, attempt) is not unique.
    job: () => p.manyToOne(Job).mapToPk().deleteRule('cascade').index(),
    attempt: p.integer(),
    workerId: p.string().length(128),
    /** Null once the account is deleted: the lease then lapses and the sweeper ends it like any other. */
    account: () => p.manyToOne(User).mapToPk().nullable().deleteRule('set null').index(),
    queue: p.string().length(64),
    /** The pg-boss entry the attempt was fetched from. */
    queueEntryId: p.uuid(),
    /** How far each heartbeat extends the lease (the type's lease when it was claimed). */
    leaseMs: p.integer(),
    claimedAt: p.datetime(),
    expiresAt: p.datetime(),
    /** Start of the attempt plus the type's timeout: no heartbeat extends a lease past it. */
    deadlineAt: p.datetime(),
    endedAt: p.datetime().nullable(),
  },
});
export class JobLease extends JobLeaseSchema.class {}
JobLeaseSchema.setClass(JobLease);

export const jobEntities = [Job, JobSearch, JobLogLine, JobTypeDeclaration, JobLease];
