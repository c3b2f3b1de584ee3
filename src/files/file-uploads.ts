import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Caller } from '../platform/caller.ts';
import { idempotencyWindowMs } from '../platform/ids.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition, invalidField, Violations } from '../platform/domain-errors.ts';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import { isNotFoundError, type ObjectStorage, type UploadedPart } from '../platform/storage/object-storage.ts';
import { sniffContentType, sniffSampleBytes } from './content-sniffing.ts';
import { StoredFile, type UploadMode } from './entities.ts';
import { DuplicateRequest, type FileIntake } from './file-intake.ts';
import { maxPresignSeconds } from '../platform/storage/sigv4.ts';
import { checkPath, discardFile, findVisibleFile, stagingKeyOf } from './file-rules.ts';
import type { filesSettings } from './files-settings.ts';
import { fileReasons } from './file-reasons.ts';

const mib = 1024 * 1024;
const minPartBytes = 16 * mib;
const maxParts = 10_000;

export interface NewUpload {
  directory: string;
  name: string;
  size: number;
  contentType: string;
  sha256: string;
  requestId: string;
}

export interface UploadPlan {
  file: StoredFile;
  uploadUrl: string;
  parts: { partNumber: number; url: string }[];
  partSize: number;
  expiresAt: Date;
}

/**
 * Uploads by their owners: presigned (one URL, or one per part, then CompleteUpload checks
 * what storage holds) or streamed through the server.
 */
export class FileUploads {
  readonly #storage: ObjectStorage;
  readonly #settings: SettingsReader<typeof filesSettings>;
  readonly #intake: FileIntake;

  constructor(deps: { storage: ObjectStorage; settings: SettingsReader<typeof filesSettings>; intake: FileIntake }) {
    this.#storage = deps.storage;
    this.#settings = deps.settings;
    this.#intake = deps.intake;
  }

  /** Reserves the file and returns where to send its bytes (one URL, or one per part). */
  async createUpload(em: EntityManager, caller: Caller, input: NewUpload): Promise<UploadPlan> {
    const violations = new Violations();
    violations.check(input.requestId.length <= 128, 'request_id', 'must be at most 128 characters');
    const declaredSha256 = checkSha256(input.sha256, 'sha256', violations);
    const path = checkPath(input.directory, input.name, violations);
    checkDeclaredSize(input.size, 'size', violations);
    violations.throwIfAny();

    const requestId = input.requestId.trim() || null;
    if (requestId) {
      const earlier = await em.findOne(StoredFile, { owner: caller.userId, requestId });
      if (earlier && Date.now() - earlier.createdAt.getTime() <= idempotencyWindowMs) return this.#replay(earlier);
      if (earlier) {
        earlier.requestId = null;
        await em.flush();
      }
    }
    // Larger files are uploaded in parts, each with its own presigned URL.
    const mode: UploadMode = input.size > this.#settings.get('files.multipart_threshold_bytes') ? 'multipart' : 'single';
    let file: StoredFile;
    try {
      file = await this.#intake.reserve(em, caller.userId, {
        ...path!,
        size: input.size,
        contentType: input.contentType,
        declaredSha256,
        mode,
        requestId,
        jobId: null,
      });
    } catch (error) {
      // A retry that raced the first call with the same request_id: answer as the first.
      const first = error instanceof DuplicateRequest ? await em.fork().findOne(StoredFile, { owner: caller.userId, requestId }) : null;
      if (first) return this.#replay(first);
      throw error;
    }
    if (mode === 'multipart') {
      try {
        file.uploadId = await this.#storage.startMultipart(file.objectKey);
        file.partSize = Math.max(minPartBytes, Math.ceil(input.size / maxParts / mib) * mib);
        await em.flush();
      } catch (error) {
        await discardFile(this.#storage, em, file);
        throw error;
      }
    }
    return this.#plan(file);
  }

  /** Checks what storage holds for the upload and makes the file AVAILABLE (or FAILED). */
  async completeUpload(em: EntityManager, caller: Caller, fileId: string, parts: UploadedPart[]): Promise<StoredFile> {
    const file = await findVisibleFile(em, caller, fileId, 'file_id');
    if (file.status === 'available') return file;
    if (file.status === 'failed') throw failedPrecondition('this upload failed its checks: start a new one', fileReasons.UPLOAD_FAILED);
    if (file.uploadMode === 'stream')
      throw failedPrecondition('this file is being uploaded through the server', fileReasons.UPLOAD_IN_PROGRESS);
    if (file.uploadMode === 'single' && parts.length > 0) throw invalidField('parts', 'must be empty for a single upload');
    if (file.uploadMode === 'multipart') {
      const expected = Math.ceil(file.size / file.partSize!);
      const numbered = parts.every((part, index) => part.partNumber === index + 1 && part.etag.trim() !== '');
      if (parts.length !== expected || !numbered) {
        throw invalidField('parts', `must list all ${expected} parts in order, each with the etag storage returned for it`);
      }
      if (file.uploadId) {
        try {
          await this.#storage.completeMultipart(
            file.objectKey,
            file.uploadId,
            parts.map((part) => ({ partNumber: part.partNumber, etag: part.etag.replace(/"/g, '') })),
          );
        } catch {
          throw failedPrecondition(
            'storage does not have every part with those etags yet: upload the missing parts and complete again',
            fileReasons.INCOMPLETE_UPLOAD,
          );
        }
        file.uploadId = null;
        await em.flush();
      }
    }
    if (file.uploadMode === 'single') {
      // The presigned URL stays valid until it expires, so the bytes are moved out of its
      // reach first and checked where they will stay: a later PUT cannot replace them.
      const stagingKey = stagingKeyOf(file);
      try {
        await this.#storage.copy(stagingKey, file.objectKey);
        await this.#storage.remove(stagingKey);
      } catch (error) {
        // Nothing staged: never sent, or a concurrent completion moved it first (checked below).
        if (!isNotFoundError(error)) throw error;
      }
    }
    const actualSize = await this.#storage.size(file.objectKey);
    if (actualSize === undefined)
      throw failedPrecondition('storage has no bytes for this file yet: PUT them to the upload URL first', fileReasons.INCOMPLETE_UPLOAD);
    const sample =
      actualSize === 0
        ? new Uint8Array()
        : await readAll(await this.#storage.read(file.objectKey, 0, Math.min(sniffSampleBytes, actualSize)), sniffSampleBytes);
    const sha256 = file.declaredSha256 && actualSize === file.size ? await hashObject(await this.#storage.read(file.objectKey)) : null;
    await this.#intake.accept(
      em,
      file,
      { size: actualSize, contentType: await sniffContentType(sample, file.declaredContentType), sha256 },
      true,
    );
    return file;
  }

  async abortUpload(em: EntityManager, caller: Caller, fileId: string): Promise<void> {
    const file = await findVisibleFile(em, caller, fileId, 'file_id');
    if (file.status !== 'uploading')
      throw failedPrecondition(`only uploads in progress can be aborted; this file is ${file.status}`, fileReasons.NOT_UPLOADING);
    await discardFile(this.#storage, em, file);
  }

  /**
   * Streams a file into storage through the server. The bytes are counted, hashed and
   * sniffed on the way; more bytes than declared, or a type that is not allowed, stops
   * the upload at once.
   */
  async uploadStream(
    em: EntityManager,
    caller: Caller,
    input: Omit<NewUpload, 'requestId'>,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<StoredFile> {
    const violations = new Violations();
    const declaredSha256 = checkSha256(input.sha256, 'metadata.sha256', violations);
    const path = checkPath(input.directory, input.name, violations, 'metadata.');
    checkDeclaredSize(input.size, 'metadata.size', violations);
    violations.throwIfAny();
    const file = await this.#intake.reserve(em, caller.userId, {
      ...path!,
      size: input.size,
      contentType: input.contentType,
      declaredSha256,
      mode: 'stream',
      requestId: null,
      jobId: null,
    });
    return this.#intake.receive(em, file, chunks, signal, { declaredSize: input.size });
  }

  async #plan(file: StoredFile): Promise<UploadPlan> {
    const expiresAt = file.uploadExpiresAt ?? new Date(Date.now() + this.#settings.get('files.upload_expiry'));
    const seconds = Math.max(60, Math.min(maxPresignSeconds, Math.floor((expiresAt.getTime() - Date.now()) / 1000)));
    if (file.uploadMode === 'multipart') {
      const count = Math.ceil(file.size / file.partSize!);
      const parts = [];
      for (let partNumber = 1; partNumber <= count; partNumber++) {
        parts.push({ partNumber, url: await this.#storage.presignPart(file.objectKey, file.uploadId!, partNumber, seconds) });
      }
      return { file, uploadUrl: '', parts, partSize: file.partSize!, expiresAt };
    }
    return { file, uploadUrl: await this.#storage.presignPut(stagingKeyOf(file), seconds), parts: [], partSize: 0, expiresAt };
  }

  /** What a CreateUpload retried with the same request_id answers: the upload as it now is. */
  async #replay(file: StoredFile): Promise<UploadPlan> {
    if (file.status === 'uploading') return this.#plan(file);
    // Completed or failed: nothing is left to send, and no new URL is made.
    return { file, uploadUrl: '', parts: [], partSize: 0, expiresAt: file.updatedAt };
  }
}

function checkDeclaredSize(size: number, field: string, violations: Violations): void {
  violations.check(Number.isSafeInteger(size) && size >= 0, field, 'must be the exact size in bytes');
}

function checkSha256(sha256: string, field: string, violations: Violations): string | null {
  const value = sha256.trim().toLowerCase();
  if (value === '') return null;
  violations.check(/^[0-9a-f]{64}$/.test(value), field, 'must be 64 hexadecimal characters');
  return value;
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.byteLength;
    if (total >= limit) break;
  }
  stream.destroy();
  return Buffer.concat(chunks).subarray(0, limit);
}

async function hashObject(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}
