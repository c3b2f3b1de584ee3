import type { EntityManager } from '../platform/db/orm.ts';
import type { JobInputFile, JobOutputSpec } from './job-types.ts';
import type { JobView } from './job-view.ts';

/**
 * What running jobs need from the files area: their inputs, a way to store outputs, and
 * a way to drop the outputs of an attempt that did not succeed. Implemented by the files
 * area; the jobs area knows nothing of storage.
 */
export interface JobFiles {
  /** The job's input files; throws JobFailure (INPUT_MISSING) when one is gone. */
  inputs(em: EntityManager, job: JobView): Promise<JobInputFile[]>;
  /** Stores an output of `job`; returns its file id. */
  writeOutput(em: EntityManager, job: JobView, output: JobOutputSpec, bytes: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<string>;
  discard(em: EntityManager, fileIds: string[]): Promise<void>;
}
