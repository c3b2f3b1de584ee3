import { DomainError } from './platform/domain-errors.ts';
import type { JobFiles } from './jobs/job-files.ts';
import { JobFailure } from './jobs/job-types.ts';
import type { JobFileIo } from './files/job-file-io.ts';
import { jobErrorCodes } from './jobs/job-reasons.ts';

/** The files area as running jobs see it. */
export function jobFilesOf(files: JobFileIo): JobFiles {
  return {
    checkInputs(em, caller, fileIds, field) {
      return files.checkJobInputs(em, caller, fileIds, field);
    },

    async inputs(em, job) {
      if (job.inputFileIds.length === 0) return [];
      const available = await files.availableFiles(em, job.ownerId, job.inputFileIds);
      if (available.length !== job.inputFileIds.length) {
        const missing = job.inputFileIds.filter((id) => !available.some((file) => file.id === id));
        throw new JobFailure(`input files are gone or no longer available: ${missing.join(', ')}`, {
          code: jobErrorCodes.INPUT_MISSING,
          retryable: false,
        });
      }
      return available.map((file) => ({
        id: file.id,
        name: file.name,
        size: file.size,
        contentType: file.contentType,
        sha256: file.sha256 ?? null,
        open: () => files.read(file),
      }));
    },

    async writeOutput(em, job, output, bytes, signal) {
      try {
        const file = await files.writeJobOutput(
          em,
          {
            ownerId: job.ownerId,
            jobId: job.id,
            directory: output.directory ?? `/jobs/${job.id}`,
            name: output.name,
            contentType: output.contentType ?? '',
          },
          bytes,
          signal,
        );
        return file.id;
      } catch (error) {
        // Limits and bad names do not go away by trying again.
        if (error instanceof DomainError)
          throw new JobFailure(`the output ${output.name} could not be stored: ${error.message}`, {
            code: error.reason ?? jobErrorCodes.OUTPUT_REFUSED,
            retryable: false,
          });
        throw error;
      }
    },

    discard(em, fileIds) {
      return files.deleteFiles(em, fileIds);
    },

    async adoptOutputs(tx, job, uploaderId, fileIds, field) {
      const adopted = await files.adoptOutputs(tx, { uploaderId, ownerId: job.ownerId, jobId: job.id, fileIds, field });
      return adopted.map((file) => file.id);
    },
  };
}
