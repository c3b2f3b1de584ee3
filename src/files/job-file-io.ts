import type { Readable } from 'node:stream';
import { LockMode } from '@mikro-orm/core';
import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, Violations, type FieldViolation } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import { StoredFile } from './entities.ts';
import type { FileIntake } from './file-intake.ts';
import { checkPath, discardFile } from './file-rules.ts';

/** How many outputs one CompleteJob may name (worker.proto's CompleteJobRequest). */
const maxAdoptedOutputs = 100;

/**
 * Files as jobs use them: inputs checked when a job is created and read while it runs,
 * outputs written (owned by the job's owner) or handed over by an external worker, and
 * dropped when an attempt fails.
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

  /**
   * Hands files an external worker uploaded to the owner of the job they are outputs of:
   * each becomes the owner's, linked to the job, in `/jobs/<job id>` under its own name,
   * and counts against the owner's quota from then on. Every file must be the uploader's,
   * AVAILABLE and not yet linked to a job; one violation (under `field[i]`) per one that
   * is not, and nothing changes. Runs in the caller's transaction: the files stay locked
   * until it ends, and nothing is committed here. The bytes stay where they are (the
   * object key names the uploader, as keys never move).
   */
  async adoptOutputs(
    tx: EntityManager,
    input: { uploaderId: string; ownerId: string; jobId: string; fileIds: string[]; field: string },
  ): Promise<StoredFile[]> {
    const { uploaderId, ownerId, jobId, fileIds, field } = input;
    if (fileIds.length > maxAdoptedOutputs) throw invalidField(field, `must name at most ${maxAdoptedOutputs} files`);
    if (fileIds.length === 0) return [];
    // In id order, so that two transactions adopting overlapping files cannot deadlock.
    const locked = await tx.find(
      StoredFile,
      { id: { $in: fileIds.filter((id) => isUuid(id)) }, owner: uploaderId },
      { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: 'asc' }, disableIdentityMap: true },
    );
    const byId = new Map(locked.map((file) => [file.id, file]));
    const directory = `/jobs/${jobId}`;
    const taken = new Set(
      (
        await tx.find(
          StoredFile,
          {
            owner: ownerId,
            directory,
            name: { $in: locked.map((file) => file.name) },
            status: { $ne: 'failed' },
            id: { $nin: locked.map((file) => file.id) },
          },
          { fields: ['name'], disableIdentityMap: true },
        )
      ).map((file) => file.name),
    );
    const violations = new Violations();
    const firstIndex = new Map<string, number>();
    fileIds.forEach((id, index) => {
      const at = `${field}[${index}]`;
      const file = byId.get(id);
      const first = firstIndex.get(id);
      if (first === undefined) firstIndex.set(id, index);
      if (!isUuid(id)) violations.add(at, 'must be a UUID');
      else if (first !== undefined) violations.add(at, `repeats ${field}[${first}]`);
      else if (!file) violations.add(at, 'no such file');
      else if (file.status !== 'available') violations.add(at, `the file is ${file.status}, not available`);
      else if (file.job) violations.add(at, 'the file is already an output of a job');
      else if (taken.has(file.name)) violations.add(at, `an output named ${file.name} already exists for this job`);
      else taken.add(file.name);
    });
    violations.throwIfAny();
    if (ownerId !== uploaderId) {
      const adoptedBytes = locked.reduce((total, file) => total + file.size, 0);
      await this.#intake.checkQuotaFor(tx, ownerId, adoptedBytes, 'the outputs');
    }
    const changes = { owner: ownerId, job: jobId, directory, updatedAt: new Date() };
    await tx.nativeUpdate(StoredFile, { id: { $in: [...byId.keys()] } }, changes);
    return fileIds.map((id) => Object.assign(byId.get(id)!, changes));
  }

  /** Removes files with their bytes (outputs of an attempt that failed). */
  async deleteFiles(em: EntityManager, fileIds: string[]): Promise<void> {
    for (const file of await em.find(StoredFile, { id: { $in: fileIds } })) await discardFile(this.#storage, em, file);
  }
}
