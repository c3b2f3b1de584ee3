import type { Readable } from 'node:stream';
import type { z } from 'zod';
import type { LogLevelName } from './entities.ts';
import { jobErrorCodes } from './job-reasons.ts';

/** An input file of a job, as its handler sees it. */
export interface JobInputFile {
  id: string;
  name: string;
  size: number;
  contentType: string;
  /** Hex SHA-256 when known. */
  sha256: string | null;
  /** A fresh stream of the file's bytes. */
  open(): Promise<Readable>;
}

export interface JobOutputSpec {
  name: string;
  /** Default `/jobs/<job id>`. */
  directory?: string;
  /** A hint: the stored type is sniffed from the bytes. */
  contentType?: string;
}

/** What a handler gets for one attempt of one job. */
export interface JobContext<Params> {
  jobId: string;
  ownerId: string;
  /** The params, as parsed by the type's schema. */
  params: Params;
  /** 1 for the first attempt. */
  attempt: number;
  /** Aborted when the job is cancelled, runs past its timeout, or the server shuts down. */
  signal: AbortSignal;
  /** Reports progress (0-100) and what the handler is doing; cheap to call often. */
  progress(percent: number, message?: string): void;
  /** Appends a line to the job's log. */
  log(message: string, level?: LogLevelName): void;
  /** The job's input files, in the order they were given. */
  inputs: JobInputFile[];
  /**
   * Stores `bytes` (streamed, never held whole) as an output file of the job, owned by its
   * submitter. Outputs of an attempt that does not succeed are deleted.
   */
  writeOutput(output: JobOutputSpec, bytes: AsyncIterable<Uint8Array>): Promise<{ id: string }>;
}

export interface RetryPolicy {
  /** Attempts when the submitter does not choose (1 to 20). */
  defaultMaxAttempts: number;
  /** Wait before the second attempt. */
  delayMs: number;
  /** Double the wait after each failed attempt (with jitter), up to maxDelayMs. */
  backoff: boolean;
  maxDelayMs: number;
}

/** A job type: its queue, its params schema and how its handler runs. */
export interface JobType<Params = unknown> {
  name: string;
  description: string;
  paramsSchema: z.ZodType<Params>;
  /** Jobs of this type one instance runs at once. */
  concurrency: number;
  /** Jobs fetched from the queue at once (more for short jobs: fewer round trips). */
  batchSize: number;
  /** How many input files a job of this type takes (default none). */
  inputFiles?: { min: number; max: number };
  /** An attempt running longer is aborted and fails with DEADLINE_EXCEEDED. */
  timeoutMs: number;
  /** After its signal is aborted, how long a handler may take to stop before it is abandoned. */
  cancelGraceMs: number;
  retry: RetryPolicy;
  /** Returns the job's result; throwing fails the attempt. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler with no result simply returns nothing.
  run(context: JobContext<Params>): Promise<Record<string, unknown> | void>;
}

/** Declares a job type with its params type inferred from the schema. */
export function defineJobType<Schema extends z.ZodType>(
  type: Omit<JobType<z.infer<Schema>>, 'paramsSchema'> & { paramsSchema: Schema },
): JobType<unknown> {
  return type as unknown as JobType<unknown>;
}

/** What a job type's (and so its queue's) name looks like. */
export const jobTypeNamePattern = /^[a-z][a-z0-9_-]{0,63}$/;

/** The in-process job types, by name: the one place where handlers are registered. */
export class JobTypeRegistry {
  readonly #types = new Map<string, JobType>();

  constructor(types: JobType[]) {
    for (const type of types) {
      if (!jobTypeNamePattern.test(type.name)) throw new Error(`bad job type name "${type.name}"`);
      if (this.#types.has(type.name)) throw new Error(`job type "${type.name}" is registered twice`);
      this.#types.set(type.name, type);
    }
  }

  get(name: string): JobType | undefined {
    return this.#types.get(name);
  }

  all(): JobType[] {
    return [...this.#types.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  names(): string[] {
    return this.all().map((type) => type.name);
  }
}

/**
 * Thrown by a handler to fail an attempt with a cause of its own: `retryable: false`
 * fails the job at once, whatever attempts are left.
 */
export class JobFailure extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(message: string, options: { code?: string; retryable?: boolean } = {}) {
    super(message);
    this.name = 'JobFailure';
    this.code = options.code ?? jobErrorCodes.HANDLER_ERROR;
    this.retryable = options.retryable ?? true;
  }
}
