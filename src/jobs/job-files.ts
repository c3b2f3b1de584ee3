import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import type { FieldViolation } from '../platform/domain-errors.ts';
import type { JobInputFile, JobOutputSpec } from './job-types.ts';
import type { JobView } from './job-view.ts';

/**
 * What the jobs area needs from the files area: a check of a new job's input files, and
 * for running jobs their inputs, a way to store outputs (or take over those an external
 * worker uploaded), and a way to drop the outputs of an attempt that did not succeed. The composition root implements it over the files
 * area; the jobs area knows nothing of storage.
 */
export interface JobFiles {
  /** Checks that input files exist, belong to the caller and are complete: one violation (under `field`) per one that is not. */
  checkInputs(em: EntityManager, caller: Caller, fileIds: string[], field: string): Promise<FieldViolation[]>;
  /** The job's input files; throws JobFailure (INPUT_MISSING) when one is gone. */
  inputs(em: EntityManager, job: JobView): Promise<JobInputFile[]>;
  /** Stores an output of `job`; returns its file id. */
  writeOutput(
    em: EntityManager,
    job: JobView,
    output: JobOutputSpec,
    bytes: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<string>;
  discard(em: EntityManager, fileIds: string[]): Promise<void>;
  /**
   * Makes files an external worker (account `uploaderId`) uploaded the outputs of `job`:
   * its owner's, in `/jobs/<job id>`, within the owner's quota. Runs in the caller's
   * transaction; InvalidArgument (one violation per bad id, under `field[i]`) or
   * ResourceExhausted (QUOTA_EXCEEDED) change nothing. Returns the file ids, in order.
   */
  adoptOutputs(tx: EntityManager, job: JobView, uploaderId: string, fileIds: string[], field: string): Promise<string[]>;
}
