import { LockMode, UniqueConstraintViolationException, type QueryOrderMap } from '@mikro-orm/core';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { jobsSettings } from './jobs-settings.ts';
import { visibleTo, type Caller } from '../platform/caller.ts';
import type pg from 'pg';
import type { EntityManager } from '../platform/db/orm.ts';
import { pipelinedTransaction } from '../platform/db/pipelined-transaction.ts';
import { failedPrecondition, invalidArgument, invalidField, notFound, Violations } from '../platform/domain-errors.ts';
import type { JobFiles } from './job-files.ts';
import { idempotencyWindowMs, newId, requireId } from '../platform/ids.ts';
import { findPage, parseOrderBy, type Page, type PageRequest } from '../platform/pagination.ts';
import { transactionDb, type PgBoss } from '../platform/queue/pg-boss.ts';
import { Job, JobLogLine } from './entities.ts';
import { storedLogLine, type StoredLogLine } from './job-logs.ts';
import { jobCancelChannel, type JobChanges } from './job-changes.ts';
import { jobSearchText, jobWhere, type JobFilter } from './job-filter.ts';
import { checkLabels } from './job-labels.ts';
import { nextQueueEntry, queueEntryOf } from '../platform/queue/queue-entries.ts';
import type { JobTypeRegistry } from './job-types.ts';
import { addParamsViolations, type JobTypeCatalog } from './job-type-catalog.ts';
import { isFinal, jobView, jobViewOfStored, storedJobOfValues, type JobView } from './job-view.ts';
import { insertJobRows, jobRowsInsert, viewOfRow, type NewJobRow } from './job-rows.ts';
import { jobReasons } from './job-reasons.ts';
import { JobReads } from './job-reads.ts';
import { checkUpdateMask } from '../platform/update-masks.ts';

export interface CreateJobInput {
  type: string;
  name: string;
  params: Record<string, unknown> | undefined;
  labels: Record<string, string>;
  priority: number;
  maxAttempts: number;
  inputFileIds: string[];
  runAfter: Date | undefined;
  requestId: string;
}

/** A validated CreateJob request, shaped as the row to insert. */
interface PreparedJob {
  id: string;
  type: string;
  name: string;
  params: Record<string, unknown>;
  labels: Record<string, string>;
  searchText: string;
  priority: number;
  maxAttempts: number;
  inputFileIds: string[];
  runAfter: Date | null;
  requestId: string | null;
}

export interface JobChangesInput {
  name?: string;
  labels?: Record<string, string>;
  priority?: number;
}

export interface JobStats {
  total: number;
  countsByStatus: Record<string, number>;
  countsByType: Record<string, Record<string, number>>;
  durationP50Ms: number | undefined;
  durationP95Ms: number | undefined;
  finishedLastHour: number;
  throughputPerMinute: number;
}

export interface JobsServiceDeps {
  registry: JobTypeRegistry;
  catalog: JobTypeCatalog;
  boss: PgBoss;
  settings: SettingsReader<typeof jobsSettings>;
  changes: JobChanges;
  files: JobFiles;
  /**
   * The ORM's connection, for reads that need no unit of work: a GetJob then costs no
   * EntityManager fork (its unit of work, identity map and services, for one row).
   */
  connection: ReturnType<EntityManager['getConnection']>;
  /**
   * Pipelining connections (pg's `pipeline: true`) for creating jobs in one round trip
   * (see #createPipelined); without it, every creation takes the ORM's transaction.
   */
  creationPool?: pg.Pool;
}

const maxBatch = 1000;
const updatablePaths = ['name', 'labels', 'priority'] as const;

const orderings: Record<string, QueryOrderMap<Job>> = {
  '': { id: 'desc' },
  'create_time desc': { id: 'desc' },
  create_time: { id: 'asc' },
  'create_time asc': { id: 'asc' },
  'priority desc': { priority: 'desc', createdAt: 'asc', id: 'asc' },
};

/** What a client can do with jobs: submit, read, change, cancel, retry, delete, count. */
export class JobsService {
  readonly #registry: JobTypeRegistry;
  readonly #catalog: JobTypeCatalog;
  readonly #boss: PgBoss;
  readonly #settings: SettingsReader<typeof jobsSettings>;
  readonly #changes: JobChanges;
  readonly #files: JobFiles;
  readonly #connection: JobsServiceDeps['connection'];
  readonly #creationPool: pg.Pool | undefined;
  readonly #reads: JobReads;

  constructor(deps: JobsServiceDeps) {
    this.#registry = deps.registry;
    this.#catalog = deps.catalog;
    this.#boss = deps.boss;
    this.#settings = deps.settings;
    this.#changes = deps.changes;
    this.#files = deps.files;
    this.#connection = deps.connection;
    this.#creationPool = deps.creationPool;
    this.#reads = new JobReads(() => this.#connection.getNativeClient());
  }

  async create(em: EntityManager, caller: Caller, input: CreateJobInput): Promise<JobView> {
    const [job] = await this.#createAll(em, caller, [input], (field) => field);
    return job!;
  }

  /** All or nothing: one transaction, and the first bad request's fields named `requests[i].…`. */
  async batchCreate(em: EntityManager, caller: Caller, inputs: CreateJobInput[]): Promise<JobView[]> {
    if (inputs.length === 0 || inputs.length > maxBatch) throw invalidField('requests', `must hold 1 to ${maxBatch} jobs`);
    return this.#createAll(em, caller, inputs, (field, index) => `requests[${index}].${field}`);
  }

  /**
   * The hottest read: no entity hydrated (the ORM's findOne cost more CPU than the query),
   * and the reads of one event-loop turn share one named statement on the ORM's own pool
   * (`JobReads`). Another owner's job is not found, as a job that does not exist.
   */
  async get(caller: Caller, id: string): Promise<JobView> {
    requireId(id, 'id');
    const { owner } = visibleTo(caller);
    const values = await this.#reads.read(id);
    if (!values || (owner !== undefined && values[1] !== owner)) throw notFound('job');
    return jobViewOfStored(storedJobOfValues(values));
  }

  async list(em: EntityManager, caller: Caller, filter: JobFilter, orderBy: string, page: PageRequest): Promise<Page<JobView>> {
    const order = parseOrderBy(orderBy, orderings, 'must be "create_time desc", "create_time" or "priority desc"');
    const result = await findPage(em, Job, {
      where: jobWhere(filter, caller),
      orderBy: order,
      query: ['jobs', filter, order, caller.userId],
      page,
    });
    return { items: result.items.map(jobView), nextPageToken: result.nextPageToken };
  }

  async update(em: EntityManager, caller: Caller, id: string, changes: JobChangesInput, updateMask: string[]): Promise<JobView> {
    requireId(id, 'job.id');
    const violations = new Violations();
    const paths = checkUpdateMask(updateMask, updatablePaths, violations);
    if (paths.has('name')) checkName(changes.name ?? '', 'job.name', violations);
    if (paths.has('labels')) checkLabels(changes.labels ?? {}, 'job.labels', violations);
    if (paths.has('priority')) checkPriority(changes.priority ?? 0, 'job.priority', violations);
    violations.throwIfAny();

    return this.#changes.transact(em, async (tx) => {
      const job = await this.#findVisible(tx, caller, id, LockMode.PESSIMISTIC_WRITE);
      if (paths.has('priority') && changes.priority !== job.priority) {
        if (job.status !== 'queued')
          throw failedPrecondition('the priority can only change while the job is queued', jobReasons.JOB_NOT_QUEUED);
        job.priority = changes.priority ?? 0;
        if (job.queueJobId) {
          await this.#boss.update(job.type, { jobId: job.id }, { id: job.queueJobId, priority: job.priority, db: transactionDb(tx) });
        }
      }
      if (paths.has('name')) job.name = (changes.name ?? '').trim();
      if (paths.has('labels')) job.labels = changes.labels ?? {};
      if (paths.has('name') || paths.has('labels')) {
        await tx.execute('update job_search set search_text = ? where job_id = ?', [
          jobSearchText(job.name, job.labels, job.params),
          job.id,
        ]);
      }
      return this.#changes.record(tx, job, 'updated');
    });
  }

  /**
   * A queued job is cancelled at once; a running one is asked to stop, on whichever
   * instance runs it, and the runner ends it CANCELLED.
   */
  async cancel(em: EntityManager, caller: Caller, id: string, reason: string): Promise<JobView> {
    requireId(id, 'id');
    if (reason.length > 500) throw invalidField('reason', 'must be at most 500 characters');
    return this.#changes.transact(em, async (tx) => {
      const job = await this.#findVisible(tx, caller, id, LockMode.PESSIMISTIC_WRITE);
      if (isFinal(job.status)) throw failedPrecondition(`the job has already finished (${job.status})`, jobReasons.JOB_FINISHED);
      if (job.cancelRequested) return jobView(job);
      job.cancelReason = reason.trim() || null;
      if (job.status === 'queued') {
        job.status = 'cancelled';
        job.finishedAt = new Date();
        if (job.queueJobId) await this.#boss.cancel(job.type, job.queueJobId, { db: transactionDb(tx) });
      } else {
        job.cancelRequested = true;
        await tx.execute('select pg_notify(?, ?)', [jobCancelChannel, job.id]);
      }
      return this.#changes.record(tx, job, 'updated');
    });
  }

  /** Queues a failed or cancelled job again, with a fresh set of attempts. */
  async retry(em: EntityManager, caller: Caller, id: string): Promise<JobView> {
    requireId(id, 'id');
    return this.#changes.transact(em, async (tx) => {
      const job = await this.#findVisible(tx, caller, id, LockMode.PESSIMISTIC_WRITE);
      if (job.status !== 'failed' && job.status !== 'cancelled') {
        throw failedPrecondition(`only failed or cancelled jobs can be retried; this one is ${job.status}`, jobReasons.JOB_NOT_RETRYABLE);
      }
      if (!this.#catalog.get(job.type)) throw failedPrecondition(`the job type "${job.type}" no longer exists`, jobReasons.JOB_TYPE_GONE);
      await this.#lockTypes(tx, [job.type]);
      Object.assign(job, {
        status: 'queued',
        attempt: 0,
        progressPercent: 0,
        progressMessage: '',
        result: null,
        errorMessage: null,
        errorCode: null,
        startedAt: null,
        finishedAt: null,
        cancelRequested: false,
        cancelReason: null,
        abandoned: false,
        workerId: null,
        queueRetryCount: null,
      });
      await this.#enqueue(tx, job);
      return this.#changes.record(tx, job, 'updated');
    });
  }

  /** Deletes a finished job with its logs. */
  async delete(em: EntityManager, caller: Caller, id: string): Promise<void> {
    requireId(id, 'id');
    await this.#changes.transact(em, async (tx) => {
      const job = await this.#findVisible(tx, caller, id, LockMode.PESSIMISTIC_WRITE);
      if (!isFinal(job.status))
        throw failedPrecondition(
          `only finished jobs can be deleted; this one is ${job.status}: cancel it first`,
          jobReasons.JOB_NOT_FINISHED,
        );
      this.#changes.record(tx, job, 'deleted');
      if (job.queueJobId) await this.#boss.deleteJob(job.type, job.queueJobId, { db: transactionDb(tx) });
      tx.remove(job);
    });
  }

  async stats(em: EntityManager, caller: Caller, filter: JobFilter): Promise<JobStats> {
    // The filter is compiled by the ORM into a sub-query of matching ids; the aggregates run over it.
    const matching = em
      .createQueryBuilder(Job, 'j')
      .select('j.id')
      .where(jobWhere(filter, caller) as never)
      .toQuery();
    const byTypeAndStatus = await em.execute<{ type: string; status: string; count: string }[]>(
      `select type, status, count(*) as count from jobs where id in (${matching.sql}) group by type, status`,
      [...matching.params],
    );
    const [timing] = await em.execute<{ p50: number | null; p95: number | null; last_hour: string; last_15m: string }[]>(
      `select percentile_cont(0.5) within group (order by extract(epoch from (finished_at - started_at))) as p50,
              percentile_cont(0.95) within group (order by extract(epoch from (finished_at - started_at))) as p95,
              count(*) filter (where finished_at > now() - interval '1 hour') as last_hour,
              count(*) filter (where finished_at > now() - interval '15 minutes') as last_15m
         from jobs where id in (${matching.sql}) and finished_at is not null and started_at is not null`,
      [...matching.params],
    );
    const countsByStatus: Record<string, number> = {};
    const countsByType: Record<string, Record<string, number>> = {};
    let total = 0;
    for (const row of byTypeAndStatus) {
      const count = Number(row.count);
      total += count;
      countsByStatus[row.status] = (countsByStatus[row.status] ?? 0) + count;
      const typeCounts = countsByType[row.type] ?? {};
      typeCounts[row.status] = count;
      countsByType[row.type] = typeCounts;
    }
    const toMs = (seconds: number | null | undefined) =>
      seconds === null || seconds === undefined ? undefined : Math.round(Number(seconds) * 1000);
    return {
      total,
      countsByStatus,
      countsByType,
      durationP50Ms: toMs(timing?.p50),
      durationP95Ms: toMs(timing?.p95),
      finishedLastHour: Number(timing?.last_hour ?? 0),
      throughputPerMinute: Number(timing?.last_15m ?? 0) / 15,
    };
  }

  /** One page of a job's log lines, in order. */
  async listLogs(em: EntityManager, caller: Caller, id: string, page: PageRequest): Promise<Page<StoredLogLine>> {
    await this.#findVisible(em, caller, id);
    const result = await findPage(em, JobLogLine, { where: { job: id }, orderBy: { sequence: 'asc' }, query: ['logs', id], page });
    return {
      items: result.items.map(storedLogLine),
      nextPageToken: result.nextPageToken,
    };
  }

  /** A job the caller may see (their own; any for admins), or NotFound. */
  async #findVisible(em: EntityManager, caller: Caller, id: string, lockMode?: LockMode): Promise<Job> {
    requireId(id, 'id');
    const job = await em.findOne(Job, { id, ...visibleTo(caller) }, lockMode ? { lockMode } : {});
    if (!job) throw notFound('job');
    return job;
  }

  async #createAll(
    em: EntityManager,
    caller: Caller,
    inputs: CreateJobInput[],
    fieldOf: (field: string, index: number) => string,
  ): Promise<JobView[]> {
    const prepared: PreparedJob[] = [];
    for (const [index, input] of inputs.entries()) {
      prepared.push(await this.#prepare(em, caller, input, (field) => fieldOf(field, index)));
    }
    // Neither an earlier request to look up nor a declared type to lock: nothing to read first.
    if (this.#creationPool && prepared.every((candidate) => !candidate.requestId && !this.#catalog.external(candidate.type))) {
      return this.#createPipelined(this.#creationPool, caller, prepared);
    }
    try {
      return await this.#changes.transact(em, async (tx) => {
        const views: JobView[] = [];
        const created: NewJobRow[] = [];
        // Jobs by request id: earlier calls', then this batch's (a repeated id in one batch is one job).
        await this.#lockTypes(
          tx,
          prepared.map((candidate) => candidate.type),
        );
        const byRequestId = new Map<string, JobView>(
          [...(await this.#earlierRequests(tx, caller, prepared))].map(([requestId, job]) => [requestId, jobView(job)]),
        );
        for (const candidate of prepared) {
          const earlier = candidate.requestId ? byRequestId.get(candidate.requestId) : undefined;
          if (earlier) {
            views.push(earlier);
            continue;
          }
          const row = newJobRow(candidate, caller.userId);
          const view = viewOfRow(row);
          if (candidate.requestId) byRequestId.set(candidate.requestId, view);
          created.push(row);
          views.push(view);
        }
        // One statement for the rows and their events, then one queue insert per type.
        await insertJobRows(tx, created);
        await this.#enqueueNew(tx, created);
        return views;
      });
    } catch (error) {
      // Two identical requests raced: the loser returns what the winner created.
      if (isUniqueViolation(error) && prepared.some((candidate) => candidate.requestId)) {
        const winners = await this.#earlierRequests(em.fork(), caller, prepared);
        return prepared.map((candidate) => {
          const earlier = candidate.requestId ? winners.get(candidate.requestId) : undefined;
          if (!earlier) throw error;
          return jobView(earlier);
        });
      }
      throw error;
    }
  }

  /**
   * Creates jobs that need nothing read first in one pipelined transaction: BEGIN, the
   * rows with their search text and events (one statement), the queue entries (pg-boss's
   * insert, one per type, through the same connection) and COMMIT go out together, so a
   * CreateJob waits for one round trip instead of four. The same statements, in the same
   * order, as the ORM's transaction in #createAll; the events are sequenced after the commit.
   */
  async #createPipelined(pool: pg.Pool, caller: Caller, prepared: PreparedJob[]): Promise<JobView[]> {
    const created = prepared.map((candidate) => newJobRow(candidate, caller.userId));
    await pipelinedTransaction(pool, async ({ send, include }) => {
      const { text, values } = jobRowsInsert(created);
      send(text, values);
      for (const [type, ofType] of Map.groupBy(created, (job) => job.type)) {
        // pg-boss looks up its queue (cached) before it writes: wait until its statement is out.
        let sent!: () => void;
        const wasSent = new Promise<void>((resolve) => (sent = resolve));
        const db = {
          executeSql: (sql: string, params?: unknown[]) => {
            const result = send(sql, params);
            sent();
            return result;
          },
        };
        const inserted = this.#boss.insert(
          type,
          ofType.map((job) => queueEntryOf(job, job.runAfter)),
          { db },
        );
        include(inserted);
        await Promise.race([wasSent, inserted]);
      }
    });
    this.#changes.sequenceCommitted();
    return created.map(viewOfRow);
  }

  /** Validates one request and shapes the row to insert; nothing is written. */
  async #prepare(em: EntityManager, caller: Caller, input: CreateJobInput, field: (name: string) => string): Promise<PreparedJob> {
    const violations = new Violations();
    const type = this.#catalog.get(input.type);
    if (!type) violations.add(field('type'), `must be a known job type (${this.#catalog.names().join(', ')})`);
    checkName(input.name, field('name'), violations);
    checkLabels(input.labels, field('labels'), violations);
    checkPriority(input.priority, field('priority'), violations);
    violations.check(input.maxAttempts >= 0 && input.maxAttempts <= 20, field('max_attempts'), 'must be 0 (the type default) to 20');
    violations.check(input.requestId.length <= 128, field('request_id'), 'must be at most 128 characters');
    const inputs = type?.inputFiles ?? { min: 0, max: 0 };
    violations.check(
      input.inputFileIds.length >= inputs.min && input.inputFileIds.length <= inputs.max,
      field('input_file_ids'),
      inputs.max === 0
        ? `must be empty: ${input.type} jobs take no input files`
        : `must name ${inputs.min} to ${inputs.max} files for ${input.type} jobs`,
    );
    const rawParams = input.params ?? {};
    const maxBytes = this.#settings.get('jobs.max_params_bytes');
    const paramsSize = Buffer.byteLength(JSON.stringify(rawParams));
    violations.check(paramsSize <= maxBytes, field('params'), `must be at most ${maxBytes} bytes as JSON (got ${paramsSize})`);
    let params: Record<string, unknown> = rawParams;
    const inProcess = this.#registry.get(input.type);
    const external = this.#catalog.external(input.type);
    if (external && paramsSize <= maxBytes) {
      // The validator fills in the schema's defaults: work on a copy, keep the request as it came.
      params = structuredClone(rawParams);
      if (!external.validate(params)) addParamsViolations(external.validate.errors ?? [], field('params'), violations);
    } else if (inProcess && paramsSize <= maxBytes) {
      const parsed = inProcess.paramsSchema.safeParse(rawParams);
      if (parsed.success) params = parsed.data as Record<string, unknown>;
      else {
        for (const issue of parsed.error.issues) {
          const path = issue.path.map((part) => `.${String(part)}`).join('');
          if (issue.code === 'unrecognized_keys') {
            for (const key of issue.keys) violations.add(`${field('params')}${path}.${key}`, 'is not a parameter of this job type');
          } else {
            violations.add(`${field('params')}${path}`, issue.message);
          }
        }
      }
    }
    violations.throwIfAny();
    const fileViolations =
      input.inputFileIds.length > 0 ? await this.#files.checkInputs(em, caller, input.inputFileIds, field('input_file_ids')) : [];
    if (fileViolations.length > 0) throw invalidArgument(fileViolations);
    const name = input.name.trim();
    return {
      id: newId(),
      type: input.type,
      name,
      params,
      labels: input.labels,
      searchText: jobSearchText(name, input.labels, params),
      priority: input.priority,
      maxAttempts: input.maxAttempts || type!.maxAttempts,
      inputFileIds: input.inputFileIds,
      runAfter: input.runAfter ?? null,
      requestId: input.requestId.trim() || null,
    };
  }

  /**
   * The jobs earlier calls created for the request ids of `candidates`, within the
   * idempotency window, by request id: one query for the whole batch.
   */
  async #earlierRequests(tx: EntityManager, caller: Caller, candidates: PreparedJob[]): Promise<Map<string, Job>> {
    const requestIds = [...new Set(candidates.map((candidate) => candidate.requestId).filter((id): id is string => id !== null))];
    if (requestIds.length === 0) return new Map();
    const earlier = await tx.find(Job, { owner: caller.userId, requestId: { $in: requestIds } });
    const expired = earlier.filter((job) => Date.now() - job.createdAt.getTime() > idempotencyWindowMs);
    // Past the window the key is free again.
    if (expired.length > 0) {
      for (const job of expired) job.requestId = null;
      await tx.flush();
    }
    return new Map(earlier.filter((job) => !expired.includes(job)).map((job) => [job.requestId!, job]));
  }

  /** Locks the declarations of declared types against a concurrent DeleteJobType; a type deleted meanwhile is unknown. */
  async #lockTypes(tx: EntityManager, types: string[]): Promise<void> {
    const gone = await this.#catalog.lockDeclared(tx, [...new Set(types)]);
    if (gone.length > 0) throw invalidField('type', `the job type "${gone[0]}" was deleted meanwhile`);
  }

  /** Puts new jobs (with their queue entry ids set) in their pg-boss queues: one insert per queue, in the caller's transaction. */
  async #enqueueNew(tx: EntityManager, jobs: NewJobRow[]): Promise<void> {
    for (const [type, ofType] of Map.groupBy(jobs, (job) => job.type)) {
      await this.#boss.insert(
        type,
        ofType.map((job) => queueEntryOf(job, job.runAfter)),
        { db: transactionDb(tx) },
      );
    }
  }

  /** Puts the job in its pg-boss queue, in the caller's transaction, under a fresh queue entry id. */
  async #enqueue(tx: EntityManager, job: Job): Promise<void> {
    const { data, ...options } = nextQueueEntry(job, job.runAfter);
    await this.#boss.send(job.type, data, { ...options, db: transactionDb(tx) });
  }
}

/** A new job's row, queued under a fresh queue entry id. */
function newJobRow(candidate: PreparedJob, ownerId: string): NewJobRow {
  const now = new Date();
  return {
    ...candidate,
    ownerId,
    status: 'queued',
    progressPercent: 0,
    progressMessage: '',
    attempt: 0,
    outputFileIds: [],
    result: null,
    errorMessage: null,
    errorCode: null,
    createdAt: now,
    startedAt: null,
    finishedAt: null,
    updatedAt: now,
    cancelRequested: false,
    cancelReason: null,
    abandoned: false,
    version: 1,
    queueJobId: newId(),
    queueRetryCount: null,
    workerId: null,
    queuedAt: now,
  };
}

/** A unique constraint broke: through the ORM (converted) or a plain statement (PostgreSQL's code). */
function isUniqueViolation(error: unknown): boolean {
  return error instanceof UniqueConstraintViolationException || (error as { code?: unknown } | null)?.code === '23505';
}

function checkName(name: string, field: string, violations: Violations): void {
  violations.check(name.trim().length <= 200, field, 'must be at most 200 characters');
}

function checkPriority(priority: number, field: string, violations: Violations): void {
  violations.check(Number.isInteger(priority) && priority >= -100 && priority <= 100, field, 'must be from -100 to 100');
}
