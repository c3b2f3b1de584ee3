import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition, invalidField, Violations } from '../platform/domain-errors.ts';
import type { ObjectBody } from '../platform/storage/object-reads.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import type { StoredFile } from './entities.ts';
import { maxPresignSeconds } from '../platform/storage/sigv4.ts';
import { findReadableFile, noHeldInputFiles, type HeldInputFiles } from './file-rules.ts';
import { fileReasons } from './file-reasons.ts';

const defaultDownloadUrlMs = 15 * 60_000;

/** Reading an AVAILABLE file: a presigned URL for browsers, or its bytes through the server. */
export class FileDownloads {
  readonly #storage: ObjectStorage;
  readonly #heldInputs: HeldInputFiles;

  constructor(deps: { storage: ObjectStorage; heldInputs?: HeldInputFiles }) {
    this.#storage = deps.storage;
    this.#heldInputs = deps.heldInputs ?? noHeldInputFiles;
  }

  async downloadUrl(
    em: EntityManager,
    caller: Caller,
    id: string,
    expiresMs: number | undefined,
  ): Promise<{ url: string; expiresAt: Date }> {
    const file = await this.#availableFile(em, caller, id);
    const ms = expiresMs ?? defaultDownloadUrlMs;
    if (ms < 1000 || ms > maxPresignSeconds * 1000) throw invalidField('expires', 'must be from 1 second to 7 days');
    const seconds = Math.floor(ms / 1000);
    const url = await this.#storage.presignGet(file.objectKey, seconds, file.name, file.contentType);
    return { url, expiresAt: new Date(Date.now() + seconds * 1000) };
  }

  /** The file and its bytes from `offset`, `length` of them (0: to the end), read into the caller's buffers. */
  async openDownload(
    em: EntityManager,
    caller: Caller,
    id: string,
    offset: number,
    length: number,
  ): Promise<{ file: StoredFile; bytes: ObjectBody | undefined }> {
    const file = await this.#availableFile(em, caller, id);
    const violations = new Violations();
    violations.check(
      Number.isSafeInteger(offset) && offset >= 0 && offset <= file.size,
      'offset',
      `must be from 0 to the file size (${file.size})`,
    );
    violations.check(Number.isSafeInteger(length) && length >= 0, 'length', 'must not be negative');
    violations.throwIfAny();
    const count = length === 0 ? file.size - offset : Math.min(length, file.size - offset);
    return { file, bytes: count === 0 ? undefined : await this.#storage.openBody(file.objectKey, offset, count) };
  }

  async #availableFile(em: EntityManager, caller: Caller, id: string): Promise<StoredFile> {
    const file = await findReadableFile(em, caller, id, 'id', this.#heldInputs);
    if (file.status !== 'available') throw failedPrecondition(`the file is ${file.status}, not available`, fileReasons.FILE_NOT_AVAILABLE);
    return file;
  }
}
