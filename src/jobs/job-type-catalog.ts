import { LockMode } from '@mikro-orm/core';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { z } from 'zod';
import type { Caller } from '../platform/caller.ts';
import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import { alreadyExists, failedPrecondition, notFound, Violations } from '../platform/domain-errors.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import type { Logger } from '../platform/logger.ts';
import { ensureQueues, type PgBoss, type QueuePolicy } from '../platform/queue/pg-boss.ts';
import { checkUpdateMask } from '../platform/update-masks.ts';
import { Job, JobTypeDeclaration } from './entities.ts';
import { jobReasons } from './job-reasons.ts';
import { jobTypeNamePattern, type JobTypeRegistry } from './job-types.ts';
import { LatestLoads } from '../platform/latest-loads.ts';

const channel = 'yardmaster_job_types';

const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;
const day = 24 * hour;
const maxSchemaBytes = 64 * 1024;

/** A job type as clients see it, whichever runtime runs it. */
export interface JobTypeView {
  name: string;
  description: string;
  /** JSON Schema (draft 2020-12) of the params. */
  paramsSchema: Record<string, unknown>;
  runtime: 'in_process' | 'external';
  maxAttempts: number;
  timeoutMs: number;
  /** How long an external worker's claim lasts between heartbeats; undefined for in-process types. */
  leaseMs: number | undefined;
  retryDelayMs: number;
  retryBackoff: boolean;
  retryDelayMaxMs: number;
  inputFiles: { min: number; max: number };
  /** 0 for in-process types. */
  version: number;
  createdAt: Date | undefined;
  updatedAt: Date | undefined;
}

/** A declared (external) type with the validator of its current version. */
export interface ExternalJobType extends JobTypeView {
  runtime: 'external';
  leaseMs: number;
  validate: ValidateFunction;
}

/** The fields of a declared type an admin sets; undefined durations take their defaults on create. */
export interface JobTypeDeclarationInput {
  name: string;
  description: string;
  paramsSchema: Record<string, unknown> | undefined;
  maxAttempts: number;
  timeoutMs: number | undefined;
  leaseMs: number | undefined;
  retryDelayMs: number | undefined;
  retryBackoff: boolean;
  retryDelayMaxMs: number | undefined;
  minInputFiles: number;
  maxInputFiles: number;
}

const updatablePaths = [
  'description',
  'params_schema',
  'max_attempts',
  'timeout',
  'lease',
  'retry_delay',
  'retry_backoff',
  'retry_delay_max',
  'min_input_files',
  'max_input_files',
] as const;

/** No params at all: what an unset params_schema means. */
const emptyParamsSchema = { type: 'object', additionalProperties: false };

/** What a declaration that leaves a policy unset gets, on create and on update alike. */
const declarationDefaults = {
  maxAttempts: 3,
  timeoutMs: hour,
  leaseMs: minute,
  retryDelayMs: 5 * second,
  retryDelayMaxMs: 10 * minute,
};

/**
 * Every job type: the in-process ones of the registry and those an admin declared for
 * external workers. Declarations live in `job_type_declarations`; every instance holds
 * them in memory with their compiled JSON Schema validators and reloads on NOTIFY, so a
 * declaration is known everywhere at once. A declared type never has an in-process
 * handler: the job runner works the registry's types only.
 */
export class JobTypeCatalog {
  readonly #orm: MikroORM;
  readonly #registry: JobTypeRegistry;
  readonly #boss: PgBoss;
  readonly #logger: Logger;
  readonly #inProcess: JobTypeView[];
  #declared = new Map<string, ExternalJobType>();
  /** Reloads started and the newest one applied: a slow reload never overwrites a newer one. */
  readonly #loads = new LatestLoads();

  constructor(deps: { orm: MikroORM; registry: JobTypeRegistry; boss: PgBoss; logger: Logger }) {
    this.#orm = deps.orm;
    this.#registry = deps.registry;
    this.#boss = deps.boss;
    this.#logger = deps.logger.child({ component: 'job-type-catalog' });
    this.#inProcess = this.#registry.all().map((type) => ({
      name: type.name,
      description: type.description,
      // What a submitter sends: fields with defaults are optional.
      paramsSchema: z.toJSONSchema(type.paramsSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
      runtime: 'in_process',
      maxAttempts: type.retry.defaultMaxAttempts,
      timeoutMs: type.timeoutMs,
      leaseMs: undefined,
      retryDelayMs: type.retry.delayMs,
      retryBackoff: type.retry.backoff,
      retryDelayMaxMs: type.retry.maxDelayMs,
      inputFiles: type.inputFiles ?? { min: 0, max: 0 },
      version: 0,
      createdAt: undefined,
      updatedAt: undefined,
    }));
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, () => void this.#reloadLogged());
    notifications.onReconnect(() => void this.#reloadLogged());
    await this.#reload();
  }

  /** Every type, sorted by name. */
  all(): JobTypeView[] {
    return [...this.#inProcess, ...this.#declared.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): JobTypeView | undefined {
    return this.#inProcess.find((type) => type.name === name) ?? this.#declared.get(name);
  }

  /** A declared type, with its validator; undefined for in-process and unknown types. */
  external(name: string): ExternalJobType | undefined {
    return this.#registry.get(name) ? undefined : this.#declared.get(name);
  }

  names(): string[] {
    return this.all().map((type) => type.name);
  }

  async create(em: EntityManager, caller: Caller, input: JobTypeDeclarationInput): Promise<JobTypeView> {
    const violations = new Violations();
    violations.check(
      jobTypeNamePattern.test(input.name),
      'job_type.name',
      'must be 1 to 64 characters of a-z, 0-9, _ and -, starting with a letter',
    );
    const declaration = {
      name: input.name,
      description: input.description.trim(),
      paramsSchema: input.paramsSchema ?? emptyParamsSchema,
      maxAttempts: input.maxAttempts || declarationDefaults.maxAttempts,
      timeoutMs: input.timeoutMs ?? declarationDefaults.timeoutMs,
      leaseMs: input.leaseMs ?? declarationDefaults.leaseMs,
      retryDelayMs: input.retryDelayMs ?? declarationDefaults.retryDelayMs,
      retryBackoff: input.retryBackoff,
      retryDelayMaxMs: input.retryDelayMaxMs ?? declarationDefaults.retryDelayMaxMs,
      minInputFiles: input.minInputFiles,
      maxInputFiles: input.maxInputFiles,
    };
    checkDeclaration(declaration, violations);
    violations.throwIfAny();
    if (this.#registry.get(input.name)) throw alreadyExists(`"${input.name}" is a built-in job type`, 'job_type.name');
    const created = await em.transactional(async (tx) => {
      const now = new Date();
      const row = tx.create(JobTypeDeclaration, {
        ...declaration,
        version: 1,
        createdAt: now,
        updatedAt: now,
        createdBy: caller.username,
        updatedBy: caller.username,
      });
      // A name already declared fails here, before its queue's policy is touched.
      await tx.flush();
      await ensureQueues(this.#boss, [queuePolicyOf(row)]);
      await tx.execute('select pg_notify(?, ?)', [channel, row.name]);
      return row;
    });
    await this.#reload();
    return this.#declared.get(created.name) ?? externalView(created, compile(created.paramsSchema));
  }

  async update(
    em: EntityManager,
    caller: Caller,
    name: string,
    input: JobTypeDeclarationInput,
    updateMask: string[],
  ): Promise<JobTypeView> {
    if (this.#registry.get(name))
      throw failedPrecondition(`"${name}" is a built-in job type: it cannot be changed`, jobReasons.JOB_TYPE_BUILT_IN);
    const violations = new Violations();
    const paths = checkUpdateMask(updateMask, updatablePaths, violations);
    violations.throwIfAny();
    const updated = await em.transactional(async (tx) => {
      const row = await this.#findDeclared(tx, name, LockMode.PESSIMISTIC_WRITE);
      if (paths.has('description')) row.description = input.description.trim();
      if (paths.has('params_schema')) row.paramsSchema = input.paramsSchema ?? emptyParamsSchema;
      if (paths.has('max_attempts')) row.maxAttempts = input.maxAttempts || declarationDefaults.maxAttempts;
      if (paths.has('timeout')) row.timeoutMs = input.timeoutMs ?? declarationDefaults.timeoutMs;
      if (paths.has('lease')) row.leaseMs = input.leaseMs ?? declarationDefaults.leaseMs;
      if (paths.has('retry_delay')) row.retryDelayMs = input.retryDelayMs ?? declarationDefaults.retryDelayMs;
      if (paths.has('retry_backoff')) row.retryBackoff = input.retryBackoff;
      if (paths.has('retry_delay_max')) row.retryDelayMaxMs = input.retryDelayMaxMs ?? declarationDefaults.retryDelayMaxMs;
      if (paths.has('min_input_files')) row.minInputFiles = input.minInputFiles;
      if (paths.has('max_input_files')) row.maxInputFiles = input.maxInputFiles;
      checkDeclaration(row, violations);
      violations.throwIfAny();
      row.version += 1;
      row.updatedAt = new Date();
      row.updatedBy = caller.username;
      await tx.flush();
      await ensureQueues(this.#boss, [queuePolicyOf(row)]);
      await tx.execute('select pg_notify(?, ?)', [channel, row.name]);
      return row;
    });
    await this.#reload();
    return this.#declared.get(updated.name) ?? externalView(updated, compile(updated.paramsSchema));
  }

  /** Removes a declared type and its queue; refused while any of its jobs is queued or running. */
  async delete(em: EntityManager, name: string): Promise<void> {
    if (this.#registry.get(name))
      throw failedPrecondition(`"${name}" is a built-in job type: it cannot be deleted`, jobReasons.JOB_TYPE_BUILT_IN);
    await em.transactional(async (tx) => {
      // CreateJob holds a share lock on the declaration while it queues: no job slips in after the count.
      const row = await this.#findDeclared(tx, name, LockMode.PESSIMISTIC_WRITE);
      const active = await tx.count(Job, { type: name, status: { $in: ['queued', 'running'] } });
      if (active > 0)
        throw failedPrecondition(
          `${active} job(s) of type "${name}" are queued or running: cancel or clear them first`,
          jobReasons.JOB_TYPE_IN_USE,
        );
      tx.remove(row);
      await tx.flush();
      await tx.execute('select pg_notify(?, ?)', [channel, name]);
    });
    await this.#boss.deleteQueue(name);
    await this.#reload();
  }

  /**
   * Inside the transaction that queues jobs of declared types: locks their declarations
   * against a concurrent DeleteJobType, and names the ones deleted meanwhile.
   */
  async lockDeclared(tx: EntityManager, names: string[]): Promise<string[]> {
    const declared = names.filter((name) => this.external(name));
    if (declared.length === 0) return [];
    const rows = await tx.find(JobTypeDeclaration, { name: { $in: declared } }, { lockMode: LockMode.PESSIMISTIC_READ });
    return declared.filter((name) => !rows.some((row) => row.name === name));
  }

  async #findDeclared(tx: EntityManager, name: string, lockMode: LockMode): Promise<JobTypeDeclaration> {
    const row = await tx.findOne(JobTypeDeclaration, { name }, { lockMode });
    if (!row) throw notFound('job type');
    return row;
  }

  async #reloadLogged(): Promise<void> {
    try {
      await this.#reload();
    } catch (error) {
      this.#logger.warn({ err: error }, 'reloading declared job types failed');
    }
  }

  #reload(): Promise<void> {
    return this.#loads.run(
      () => this.#orm.em.fork().find(JobTypeDeclaration, {}),
      (rows) => this.#apply(rows),
    );
  }

  #apply(rows: JobTypeDeclaration[]): void {
    const next = new Map<string, ExternalJobType>();
    for (const row of rows) {
      if (this.#registry.get(row.name)) {
        this.#logger.warn({ jobType: row.name }, 'a declared job type has the name of a built-in one: the built-in one wins');
        continue;
      }
      // A schema is compiled once per version, not on every reload.
      const known = this.#declared.get(row.name);
      const validate = known && known.version === row.version ? known.validate : compile(row.paramsSchema);
      next.set(row.name, externalView(row, validate));
    }
    this.#declared = next;
  }
}

/** The pg-boss queue policy of a declared type: its expiry backstops a lease nobody renews. */
function queuePolicyOf(row: JobTypeDeclaration): QueuePolicy {
  return {
    name: row.name,
    retry: { defaultMaxAttempts: row.maxAttempts, delayMs: row.retryDelayMs, backoff: row.retryBackoff, maxDelayMs: row.retryDelayMaxMs },
    timeoutMs: row.timeoutMs,
    cancelGraceMs: row.leaseMs,
    // Its workers' heartbeats keep leases (job_leases), not pg-boss entries.
    leased: true,
  };
}

function externalView(row: JobTypeDeclaration, validate: ValidateFunction): ExternalJobType {
  return {
    name: row.name,
    description: row.description,
    paramsSchema: row.paramsSchema,
    runtime: 'external',
    maxAttempts: row.maxAttempts,
    timeoutMs: row.timeoutMs,
    leaseMs: row.leaseMs,
    retryDelayMs: row.retryDelayMs,
    retryBackoff: row.retryBackoff,
    retryDelayMaxMs: row.retryDelayMaxMs,
    inputFiles: { min: row.minInputFiles, max: row.maxInputFiles },
    version: row.version,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    validate,
  };
}

type DeclarationFields = Omit<JobTypeDeclarationInput, 'name' | 'paramsSchema'> & {
  paramsSchema: Record<string, unknown>;
  timeoutMs: number;
  leaseMs: number;
  retryDelayMs: number;
  retryDelayMaxMs: number;
};

function checkDeclaration(fields: DeclarationFields, violations: Violations): void {
  violations.check(fields.description.length <= 2000, 'job_type.description', 'must be at most 2000 characters');
  violations.check(
    fields.maxAttempts >= 1 && fields.maxAttempts <= 20,
    'job_type.max_attempts',
    `must be 0 (the default, ${declarationDefaults.maxAttempts}) to 20`,
  );
  violations.check(fields.timeoutMs >= second && fields.timeoutMs <= 7 * day, 'job_type.timeout', 'must be from 1 s to 7 days');
  violations.check(fields.leaseMs >= 5 * second && fields.leaseMs <= hour, 'job_type.lease', 'must be from 5 s to 1 hour');
  violations.check(fields.retryDelayMs >= 0 && fields.retryDelayMs <= hour, 'job_type.retry_delay', 'must be from 0 to 1 hour');
  violations.check(
    fields.retryDelayMaxMs >= fields.retryDelayMs && fields.retryDelayMaxMs <= day,
    'job_type.retry_delay_max',
    'must be from retry_delay to 1 day',
  );
  violations.check(fields.maxInputFiles >= 0 && fields.maxInputFiles <= 1000, 'job_type.max_input_files', 'must be from 0 to 1000');
  violations.check(
    fields.minInputFiles >= 0 && fields.minInputFiles <= fields.maxInputFiles,
    'job_type.min_input_files',
    'must be from 0 to max_input_files',
  );
  const size = Buffer.byteLength(JSON.stringify(fields.paramsSchema));
  if (!violations.check(size <= maxSchemaBytes, 'job_type.params_schema', `must be at most ${maxSchemaBytes} bytes as JSON`)) return;
  if (!violations.check(fields.paramsSchema.type === 'object', 'job_type.params_schema', 'must describe an object ("type": "object")'))
    return;
  try {
    compile(fields.paramsSchema);
  } catch (error) {
    violations.add('job_type.params_schema', `is not a valid JSON Schema: ${(error as Error).message}`);
  }
}

/**
 * A validator of a declared schema. Strict mode refuses unknown keywords and formats, so
 * a typo in a schema is an error when it is declared rather than a check that never runs.
 * A fresh Ajv per schema: ids declared in one type's schema cannot clash with another's.
 */
function compile(schema: Record<string, unknown>): ValidateFunction {
  const ajv = new Ajv2020({ allErrors: true, strict: true, coerceTypes: false, useDefaults: true });
  addFormats.default(ajv);
  return ajv.compile(schema);
}

/** Adds the validator's errors as violations of `params.…` fields. */
export function addParamsViolations(errors: ErrorObject[], paramsField: string, violations: Violations): void {
  for (const error of errors) {
    const path = error.instancePath
      .split('/')
      .slice(1)
      .map((part) => `.${part.replaceAll('~1', '/').replaceAll('~0', '~')}`)
      .join('');
    const params = error.params as { missingProperty?: string; additionalProperty?: string };
    if (error.keyword === 'required' && params.missingProperty) {
      violations.add(`${paramsField}${path}.${params.missingProperty}`, 'is required');
    } else if (error.keyword === 'additionalProperties' && params.additionalProperty) {
      violations.add(`${paramsField}${path}.${params.additionalProperty}`, 'is not a parameter of this job type');
    } else {
      violations.add(`${paramsField}${path}`, error.message ?? `fails ${error.keyword}`);
    }
  }
}
