import type { Readable } from 'node:stream';
import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { Violations, type FieldViolation } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import { StoredFile } from './entities.ts';
import type { FileIntake } from './file-intake.ts';
import { checkPath, discardFile } from './file-rules.ts';

/**
 * Files as jobs use them: inputs checked when a job is created and read while it runs,
 * outputs written (owned by the job's owner) and dropped when an attempt fails.
 */
export class JobFileIo {
  readonly #storage: ObjectStorage;
  readonly #intake: FileIntake;

  constructor(deps: { storage: ObjectStorage; intake: FileIntake }) {
    this.#storage = deps.storage;
    this.#intake = deps.intake;
  }

  /** Field violations for input file ids that are not the caller's AVAILABLE files. */
  async checkJobInputs(em: EntityManager, caller: Caller, fileIds: string[], field: string): Promise<FieldViolation[]> {
    const valid = fileIds.filter((id) => isUuid(id));
    const found = new Map((await em.find(StoredFile, { id: { $in: valid }, owner: caller.userId })).map((file) => [file.id, file]));
    const violations: FieldViolation[] = [];
    fileIds.forEach((id, index) => {
      const file = found.get(id);
      if (!isUuid(id)) violations.push({ field: `${field}[${index}]`, description: 'must be a UUID' });
      else if (!file) violations.push({ field: `${field}[${index}]`, description: 'no such file' });
      else if (file.status !== 'available')
        violations.push({ field: `${field}[${index}]`, description: `the file is ${file.status}, not available` });
    });
    return violations;
  }

  /** The files, by id, for a job's handler; missing or unavailable ones are left out. */
  async availableFiles(em: EntityManager, ownerId: string, fileIds: string[]): Promise<StoredFile[]> {
    const files = await em.find(StoredFile, { id: { $in: fileIds }, owner: ownerId, status: 'available' });
    const byId = new Map(files.map((file) => [file.id, file]));
    return fileIds.map((id) => byId.get(id)).filter((file): file is StoredFile => file !== undefined);
  }

  read(file: StoredFile): Promise<Readable> {
    return this.#storage.read(file.objectKey);
  }

  /** Writes a job's output file from a stream of unknown length, owned by the job's owner. */
  async writeJobOutput(
    em: EntityManager,
    output: { ownerId: string; jobId: string; directory: string; name: string; contentType: string },
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<StoredFile> {
    const violations = new Violations();
    const path = checkPath(output.directory, output.name, violations);
    violations.throwIfAny();
    const file = await this.#intake.reserve(em, output.ownerId, {
      ...path!,
      size: 0,
      contentType: output.contentType,
      declaredSha256: null,
      mode: 'stream',
      requestId: null,
      jobId: output.jobId,
    });
    return this.#intake.receive(em, file, chunks, signal, { declaredSize: undefined });
  }

  /** Removes files with their bytes (outputs of an attempt that failed). */
  async deleteFiles(em: EntityManager, fileIds: string[]): Promise<void> {
    for (const file of await em.find(StoredFile, { id: { $in: fileIds } })) await discardFile(this.#storage, em, file);
  }
}
