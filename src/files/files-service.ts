import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { UniqueConstraintViolationException, type FilterQuery } from '@mikro-orm/core';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { filesSettings } from './files-settings.ts';
import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { DomainError, failedPrecondition, invalidField, notFound, Violations, type FieldViolation } from '../platform/domain-errors.ts';
import { isUuid, newId, requireId } from '../platform/ids.ts';
import { findPage, type PageRequest } from '../platform/pagination.ts';
import { isNotFoundError, type ObjectStorage, type UploadedPart } from '../platform/storage/object-storage.ts';
import { isAllowedContentType, sniffContentType, sniffSampleBytes } from './content-sniffing.ts';
import { StoredFile, type UploadMode } from './entities.ts';
import { cleanFileName, normalizeDirectory, rootDirectory } from '../platform/file-paths.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';

const mib = 1024 * 1024;
/** Larger files are uploaded in parts, each with its own presigned URL. */
export const multipartThresholdBytes = 64 * mib;
const minPartBytes = 16 * mib;
const maxParts = 10_000;
/** Parts of streamed uploads: the memory one upload holds at most. */
const streamPartBytes = 8 * mib;
const maxPresignSeconds = 7 * 24 * 3600;
const defaultDownloadUrlMs = 15 * 60_000;
const idempotencyWindowMs = 24 * 3_600_000;

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

export interface FileListing {
  files: StoredFile[];
  directories: string[];
  nextPageToken: string;
}

export interface StorageUsage {
  bytes: number;
  fileCount: number;
  quotaBytes: number;
  uploadingBytes: number;
  byContentType: { contentType: string; bytes: number; fileCount: number }[];
}

/** What a checked upload turned out to be. */
interface VerifiedContent {
  size: number;
  contentType: string;
  sha256: string | null;
}

/**
 * Files: metadata rows here, bytes in object storage. A row is AVAILABLE only once its
 * object exists and has been checked; every failure path removes what it put in
 * storage, so an available row always has its object and an object always has its row.
 */
export class FilesService {
  readonly #storage: ObjectStorage;
  readonly #settings: SettingsReader<typeof filesSettings>;

  constructor(deps: { storage: ObjectStorage; settings: SettingsReader<typeof filesSettings> }) {
    this.#storage = deps.storage;
    this.#settings = deps.settings;
  }

  /** Reserves the file and returns where to send its bytes (one URL, or one per part). */
  async createUpload(em: EntityManager, caller: Caller, input: NewUpload): Promise<UploadPlan> {
    const violations = new Violations();
    violations.check(input.requestId.length <= 128, 'request_id', 'must be at most 128 characters');
    const declaredSha256 = this.#checkSha256(input.sha256, 'sha256', violations);
    const path = this.#checkPath(input.directory, input.name, violations);
    this.#checkDeclaredSize(input.size, 'size', violations);
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
    const mode: UploadMode = input.size > multipartThresholdBytes ? 'multipart' : 'single';
    let file: StoredFile;
    try {
      file = await this.#reserve(em, caller.userId, { ...path!, size: input.size, contentType: input.contentType, declaredSha256, mode, requestId, jobId: null });
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
        await this.#discard(em, file);
        throw error;
      }
    }
    return this.#plan(file);
  }

  /** Checks what storage holds for the upload and makes the file AVAILABLE (or FAILED). */
  async completeUpload(em: EntityManager, caller: Caller, fileId: string, parts: UploadedPart[]): Promise<StoredFile> {
    const file = await this.#findVisible(em, caller, fileId, 'file_id');
    if (file.status === 'available') return file;
    if (file.status === 'failed') throw failedPrecondition('this upload failed its checks: start a new one', 'UPLOAD_FAILED');
    if (file.uploadMode === 'stream') throw failedPrecondition('this file is being uploaded through the server', 'UPLOAD_IN_PROGRESS');
    if (file.uploadMode === 'single' && parts.length > 0) throw invalidField('parts', 'must be empty for a single upload');
    if (file.uploadMode === 'multipart') {
      const expected = Math.ceil(file.size / file.partSize!);
      const numbered = parts.every((part, index) => part.partNumber === index + 1 && part.etag.trim() !== '');
      if (parts.length !== expected || !numbered) {
        throw invalidField('parts', `must list all ${expected} parts in order, each with the etag storage returned for it`);
      }
      if (file.uploadId) {
        try {
          await this.#storage.completeMultipart(file.objectKey, file.uploadId, parts.map((part) => ({ partNumber: part.partNumber, etag: part.etag.replace(/"/g, '') })));
        } catch {
          throw failedPrecondition('storage does not have every part with those etags yet: upload the missing parts and complete again', 'INCOMPLETE_UPLOAD');
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
    if (actualSize === undefined) throw failedPrecondition('storage has no bytes for this file yet: PUT them to the upload URL first', 'INCOMPLETE_UPLOAD');
    const sample = actualSize === 0 ? new Uint8Array() : await readAll(await this.#storage.read(file.objectKey, 0, Math.min(sniffSampleBytes, actualSize)), sniffSampleBytes);
    const sha256 = file.declaredSha256 && actualSize === file.size ? await hashObject(await this.#storage.read(file.objectKey)) : null;
    await this.#accept(em, file, { size: actualSize, contentType: await sniffContentType(sample, file.declaredContentType), sha256 }, true);
    return file;
  }

  async abortUpload(em: EntityManager, caller: Caller, fileId: string): Promise<void> {
    const file = await this.#findVisible(em, caller, fileId, 'file_id');
    if (file.status !== 'uploading') throw failedPrecondition(`only uploads in progress can be aborted; this file is ${file.status}`, 'NOT_UPLOADING');
    await this.#discard(em, file);
  }

  /**
   * Streams a file into storage through the server. The bytes are counted, hashed and
   * sniffed on the way; more bytes than declared, or a type that is not allowed, stops
   * the upload at once.
   */
  async uploadStream(em: EntityManager, caller: Caller, input: Omit<NewUpload, 'requestId'>, chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<StoredFile> {
    const violations = new Violations();
    const declaredSha256 = this.#checkSha256(input.sha256, 'metadata.sha256', violations);
    const path = this.#checkPath(input.directory, input.name, violations, 'metadata.');
    this.#checkDeclaredSize(input.size, 'metadata.size', violations);
    violations.throwIfAny();
    const file = await this.#reserve(em, caller.userId, { ...path!, size: input.size, contentType: input.contentType, declaredSha256, mode: 'stream', requestId: null, jobId: null });
    return this.#receive(em, file, chunks, signal, { declaredSize: input.size });
  }

  /** Writes a job's output file from a stream of unknown length, owned by the job's owner. */
  async writeJobOutput(
    em: EntityManager,
    output: { ownerId: string; jobId: string; directory: string; name: string; contentType: string },
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<StoredFile> {
    const violations = new Violations();
    const path = this.#checkPath(output.directory, output.name, violations);
    violations.throwIfAny();
    const file = await this.#reserve(em, output.ownerId, { ...path!, size: 0, contentType: output.contentType, declaredSha256: null, mode: 'stream', requestId: null, jobId: output.jobId });
    return this.#receive(em, file, chunks, signal, { declaredSize: undefined });
  }

  async get(em: EntityManager, caller: Caller, id: string): Promise<StoredFile> {
    return this.#findVisible(em, caller, id, 'id');
  }

  async list(em: EntityManager, caller: Caller, input: { directory: string; recursive: boolean; ownerId: string }, page: PageRequest): Promise<FileListing> {
    const owner = this.#treeOwner(caller, input.ownerId);
    const directory = normalizeDirectory(input.directory);
    if (directory === undefined) throw invalidField('directory', 'is too long or too deep');
    const below = `${directory === rootDirectory ? '' : directory}/`;
    const where: FilterQuery<StoredFile> = input.recursive
      ? directory === rootDirectory
        ? { owner }
        : { owner, $or: [{ directory }, { directory: { $like: `${escapeLike(below)}%` } }] }
      : { owner, directory };
    const result = await findPage(em, StoredFile, { where, orderBy: { directory: 'asc', name: 'asc', id: 'asc' }, query: ['files', owner, directory, input.recursive], page });
    let directories: string[] = [];
    if (page.pageToken === '') {
      const rows = await em.execute<{ child: string }[]>(
        `select distinct split_part(substr(directory, ?), '/', 1) as child from files
          where owner_id = ? and directory like ? order by child limit 1000`,
        [below.length + 1, owner, `${escapeLike(below)}%`],
      );
      directories = rows.filter((row) => row.child !== '').map((row) => `${below}${row.child}`);
    }
    return { files: result.items, directories, nextPageToken: result.nextPageToken };
  }

  async move(em: EntityManager, caller: Caller, id: string, input: { directory: string; name: string }): Promise<StoredFile> {
    const file = await this.#findVisible(em, caller, id, 'id');
    const violations = new Violations();
    const path = this.#checkPath(input.directory || file.directory, input.name || file.name, violations);
    violations.throwIfAny();
    const changes = { directory: path!.directory, name: path!.name, updatedAt: new Date() };
    let moved: number;
    try {
      moved = await em.nativeUpdate(StoredFile, { id: file.id }, changes);
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) throw fileExists(path!.directory, path!.name);
      throw error;
    }
    // Deleted meanwhile.
    if (moved === 0) throw notFound('file');
    return Object.assign(file, changes);
  }

  async delete(em: EntityManager, caller: Caller, id: string): Promise<void> {
    const file = await this.#findVisible(em, caller, id, 'id');
    await this.#ensureNotInUse(em, [file.id]);
    await this.#discard(em, file);
  }

  /** Deletes every file under `directory` (recursively); returns how many. */
  async deleteDirectory(em: EntityManager, caller: Caller, input: { directory: string; confirm: string; ownerId: string }): Promise<number> {
    const owner = this.#treeOwner(caller, input.ownerId);
    const directory = normalizeDirectory(input.directory);
    if (directory === undefined || directory === rootDirectory) throw invalidField('directory', 'must name a directory below /');
    if (normalizeDirectory(input.confirm) !== directory) throw invalidField('confirm', 'must equal the directory to delete');
    const where = { owner, $or: [{ directory }, { directory: { $like: `${escapeLike(directory)}/%` } }] };
    const files = await em.find(StoredFile, where, { fields: ['id'] });
    await this.#ensureNotInUse(em, files.map((file) => file.id));
    let deleted = 0;
    for (;;) {
      const batch = await em.fork().find(StoredFile, where, { limit: 100 });
      for (const file of batch) await this.#discard(em.fork(), file);
      deleted += batch.length;
      if (batch.length < 100) return deleted;
    }
  }

  async downloadUrl(em: EntityManager, caller: Caller, id: string, expiresMs: number | undefined): Promise<{ url: string; expiresAt: Date }> {
    const file = await this.#availableFile(em, caller, id);
    const ms = expiresMs ?? defaultDownloadUrlMs;
    if (ms < 1000 || ms > maxPresignSeconds * 1000) throw invalidField('expires', 'must be from 1 second to 7 days');
    const seconds = Math.floor(ms / 1000);
    const url = await this.#storage.presignGet(file.objectKey, seconds, file.name, file.contentType);
    return { url, expiresAt: new Date(Date.now() + seconds * 1000) };
  }

  /** The file and a stream of its bytes from `offset`, `length` of them (0: to the end). */
  async openDownload(em: EntityManager, caller: Caller, id: string, offset: number, length: number): Promise<{ file: StoredFile; bytes: Readable | undefined }> {
    const file = await this.#availableFile(em, caller, id);
    const violations = new Violations();
    violations.check(Number.isSafeInteger(offset) && offset >= 0 && offset <= file.size, 'offset', `must be from 0 to the file size (${file.size})`);
    violations.check(Number.isSafeInteger(length) && length >= 0, 'length', 'must not be negative');
    violations.throwIfAny();
    const count = length === 0 ? file.size - offset : Math.min(length, file.size - offset);
    return { file, bytes: count === 0 ? undefined : await this.#storage.read(file.objectKey, offset, count) };
  }

  async usage(em: EntityManager, caller: Caller, userId: string): Promise<StorageUsage> {
    const owner = this.#treeOwner(caller, userId, 'user_id');
    const rows = await em.execute<{ content_type: string; status: string; bytes: string; count: string }[]>(
      `select content_type, status, coalesce(sum(size), 0) as bytes, count(*) as count from files
        where owner_id = ? and status <> 'failed' group by content_type, status`,
      [owner],
    );
    const available = rows.filter((row) => row.status === 'available');
    return {
      bytes: available.reduce((total, row) => total + Number(row.bytes), 0),
      fileCount: available.reduce((total, row) => total + Number(row.count), 0),
      quotaBytes: this.#settings.get('files.user_quota_bytes'),
      uploadingBytes: rows.filter((row) => row.status === 'uploading').reduce((total, row) => total + Number(row.bytes), 0),
      byContentType: available
        .map((row) => ({ contentType: row.content_type, bytes: Number(row.bytes), fileCount: Number(row.count) }))
        .sort((a, b) => b.bytes - a.bytes),
    };
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
      else if (file.status !== 'available') violations.push({ field: `${field}[${index}]`, description: `the file is ${file.status}, not available` });
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

  /** Removes files with their bytes (outputs of an attempt that failed). */
  async deleteFiles(em: EntityManager, fileIds: string[]): Promise<void> {
    for (const file of await em.find(StoredFile, { id: { $in: fileIds } })) await this.#discard(em, file);
  }

  /** Removes every file of an account with its bytes, before the account itself goes. */
  async deleteAccountFiles(em: EntityManager, userId: string): Promise<void> {
    for (;;) {
      const batch = await em.fork().find(StoredFile, { owner: userId }, { limit: 100 });
      for (const file of batch) await this.#discard(em.fork(), file);
      if (batch.length < 100) return;
    }
  }

  /** Aborts uploads past their expiry and deletes failed uploads a day old; returns how many went. */
  async cleanupStaleUploads(em: EntityManager): Promise<number> {
    const stale = await em.find(
      StoredFile,
      { $or: [{ status: 'uploading', uploadExpiresAt: { $lt: new Date() } }, { status: 'failed', updatedAt: { $lt: new Date(Date.now() - 24 * 3_600_000) } }] },
      { limit: 500 },
    );
    for (const file of stale) await this.#discard(em.fork(), file);
    return stale.length;
  }

  /**
   * Removes staged single-upload objects that no upload in progress owns (bytes PUT to a
   * URL after its upload completed, was aborted or deleted), and fails uploads whose
   * staged bytes are already larger than declared: they could never complete, and a
   * presigned PUT cannot limit its size. Returns how many objects went.
   */
  async removeOrphanStagedObjects(em: EntityManager): Promise<number> {
    let removed = 0;
    for await (const objects of this.#storage.listObjects(stagingPrefix)) {
      const idOf = (key: string) => key.slice(key.lastIndexOf('/') + 1);
      const ids = objects.map((object) => idOf(object.key)).filter((id) => isUuid(id));
      const live = new Map((await em.find(StoredFile, { id: { $in: ids }, status: 'uploading', uploadMode: 'single' })).map((file) => [file.id, file]));
      for (const object of objects) {
        const file = live.get(idOf(object.key));
        if (file && object.size <= file.size) continue;
        await this.#storage.remove(object.key);
        // Only while still uploading: a completion that got there first decided already.
        if (file) await em.nativeUpdate(StoredFile, { id: file.id, status: 'uploading' }, { status: 'failed', updatedAt: new Date() });
        removed += 1;
      }
    }
    return removed;
  }

  /**
   * Fails multipart uploads in progress whose parts already hold more than a part's
   * size (or the file's): presigned part URLs cannot bound what they carry, so this is
   * what keeps storage from filling beyond what was declared. Returns how many failed.
   */
  async failOversizedMultipartUploads(em: EntityManager): Promise<number> {
    const open = await em.find(StoredFile, { status: 'uploading', uploadMode: 'multipart', uploadId: { $ne: null } }, { orderBy: { id: 'asc' }, limit: 1000 });
    let failed = 0;
    for (const file of open) {
      const parts = await this.#storage.listParts(file.objectKey, file.uploadId!).catch((error: unknown) => {
        if (isNotFoundError(error)) return [];
        throw error;
      });
      const total = parts.reduce((sum, part) => sum + part.size, 0);
      if (total <= file.size && parts.every((part) => part.size <= file.partSize!)) continue;
      // Only while still uploading: a completion that got there first decided already.
      const claimed = await em.nativeUpdate(StoredFile, { id: file.id, status: 'uploading' }, { status: 'failed', uploadId: null, updatedAt: new Date() });
      if (claimed > 0) {
        await this.#storage.abortMultipart(file.objectKey, file.uploadId!).catch(() => {});
        failed += 1;
      }
    }
    return failed;
  }

  async #receive(em: EntityManager, file: StoredFile, chunks: AsyncIterable<Uint8Array>, signal: AbortSignal, limits: { declaredSize: number | undefined }): Promise<StoredFile> {
    const maxBytes = limits.declaredSize ?? (await this.#remainingAllowance(em, file.owner));
    const hash = createHash('sha256');
    let sample = Buffer.alloc(0);
    let received = 0;
    try {
      const size = await this.#storage.uploadStream(file.objectKey, chunks, {
        partBytes: streamPartBytes,
        signal,
        onChunk: async (chunk) => {
          received += chunk.byteLength;
          if (received > maxBytes) {
            throw limits.declaredSize === undefined
              ? new DomainError('resource_exhausted', 'the output is larger than the upload limit or the remaining quota allow', { reason: 'QUOTA_EXCEEDED' })
              : sizeMismatch(`more bytes than the declared size (${limits.declaredSize}) arrived`);
          }
          hash.update(chunk);
          if (sample.byteLength < sniffSampleBytes) {
            sample = Buffer.concat([sample, chunk.subarray(0, sniffSampleBytes - sample.byteLength)]);
            // Refused as soon as the type is known, before the rest of a large file is sent.
            if (sample.byteLength >= sniffSampleBytes) await this.#checkSniffedType(sample, file.declaredContentType);
          }
        },
      });
      await this.#accept(em, file, { size, contentType: await sniffContentType(sample, file.declaredContentType), sha256: hash.digest('hex') }, limits.declaredSize !== undefined);
      return file;
    } catch (error) {
      await this.#discard(em, file).catch(() => {});
      throw error;
    }
  }

  async #checkSniffedType(sample: Uint8Array, claimed: string): Promise<void> {
    const contentType = await sniffContentType(sample, claimed);
    if (!isAllowedContentType(contentType, this.#settings.get('files.allowed_content_types'))) throw contentTypeNotAllowed(contentType);
  }

  /**
   * The checks every upload path ends with; on success the file is AVAILABLE, on
   * failure it is FAILED without its bytes, and the error says why.
   */
  async #accept(em: EntityManager, file: StoredFile, content: VerifiedContent, sizeDeclared: boolean): Promise<void> {
    let failure: DomainError | undefined;
    if (sizeDeclared && content.size !== file.size) failure = sizeMismatch(`storage holds ${content.size} bytes, but ${file.size} were declared`);
    if (!failure && !isAllowedContentType(content.contentType, this.#settings.get('files.allowed_content_types'))) failure = contentTypeNotAllowed(content.contentType);
    if (!failure && file.declaredSha256 && content.sha256 !== file.declaredSha256) {
      failure = new DomainError('invalid_argument', 'the SHA-256 of the bytes does not match the declared one', {
        reason: 'CHECKSUM_MISMATCH',
        violations: [{ field: 'sha256', description: 'does not match the uploaded bytes' }],
      });
    }
    if (failure) {
      await this.#storage.remove(file.objectKey).catch(() => {});
      file.status = 'failed';
      file.uploadId = null;
      await em.flush();
      throw failure;
    }
    // Only an upload still in progress becomes available: housekeeping or an account's
    // deletion may have removed the row while the bytes were arriving.
    const accepted = await em.nativeUpdate(
      StoredFile,
      { id: file.id, status: 'uploading' },
      { status: 'available', size: content.size, contentType: content.contentType, sha256: content.sha256, uploadExpiresAt: null, uploadId: null, updatedAt: new Date() },
    );
    if (accepted === 0) {
      const current = await em.fork().findOne(StoredFile, file.id);
      if (current?.status === 'available') {
        // A concurrent completion of the same upload got there first, with the same bytes.
        Object.assign(file, { status: current.status, size: current.size, contentType: current.contentType, sha256: current.sha256, uploadExpiresAt: null, uploadId: null });
        return;
      }
      await this.#storage.remove(file.objectKey).catch(() => {});
      throw failedPrecondition('this upload was removed while its bytes were arriving (it expired or was aborted)', 'UPLOAD_GONE');
    }
    Object.assign(file, { status: 'available', size: content.size, contentType: content.contentType, sha256: content.sha256, uploadExpiresAt: null, uploadId: null });
  }

  /**
   * Creates the UPLOADING row after the limits: the declared size against the upload
   * limit and, under a per-account lock so that concurrent uploads cannot both slip
   * under it, against the quota.
   */
  async #reserve(
    em: EntityManager,
    ownerId: string,
    input: { directory: string; name: string; size: number; contentType: string; declaredSha256: string | null; mode: UploadMode; requestId: string | null; jobId: string | null },
  ): Promise<StoredFile> {
    const maxUpload = this.#settings.get('files.max_upload_bytes');
    if (input.size > maxUpload) {
      throw new DomainError('invalid_argument', `the file is larger than the upload limit (${maxUpload} bytes)`, {
        reason: 'FILE_TOO_LARGE',
        violations: [{ field: input.mode === 'stream' ? 'metadata.size' : 'size', description: `must be at most ${maxUpload} bytes` }],
      });
    }
    const id = newId();
    try {
      return await em.transactional(async (tx) => {
        await tx.execute('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`files:${ownerId}`]);
        // A retry that raced the first call: under the lock, the first one's row is visible.
        if (input.requestId && (await tx.count(StoredFile, { owner: ownerId, requestId: input.requestId })) > 0) throw new DuplicateRequest();
        const quota = this.#settings.get('files.user_quota_bytes');
        if (quota > 0) {
          const used = await this.#usedBytes(tx, ownerId);
          if (used + input.size > quota) {
            throw new DomainError('resource_exhausted', `the upload would exceed the storage quota (${used} of ${quota} bytes used)`, {
              reason: 'QUOTA_EXCEEDED',
              metadata: { used_bytes: String(used), quota_bytes: String(quota) },
            });
          }
        }
        const file = tx.create(StoredFile, {
          id,
          owner: ownerId,
          directory: input.directory,
          name: input.name,
          size: input.size,
          contentType: 'application/octet-stream',
          declaredContentType: input.contentType.slice(0, 255),
          declaredSha256: input.declaredSha256,
          status: 'uploading',
          objectKey: `files/${ownerId}/${id}`,
          uploadMode: input.mode,
          uploadExpiresAt: new Date(Date.now() + this.#settings.get('files.upload_expiry')),
          job: input.jobId,
          requestId: input.requestId,
        });
        await tx.flush();
        return file;
      });
    } catch (error) {
      // The request_id was checked under the lock above, so only the path can clash.
      if (error instanceof UniqueConstraintViolationException) throw fileExists(input.directory, input.name);
      throw error;
    }
  }

  async #usedBytes(em: EntityManager, ownerId: string): Promise<number> {
    const [row] = await em.execute<{ bytes: string }[]>(`select coalesce(sum(size), 0) as bytes from files where owner_id = ? and status in ('available', 'uploading')`, [ownerId]);
    return Number(row?.bytes ?? 0);
  }

  /** How many more bytes an output of unknown size may have: the upload limit, and the quota left. */
  async #remainingAllowance(em: EntityManager, ownerId: string): Promise<number> {
    const maxUpload = this.#settings.get('files.max_upload_bytes');
    const quota = this.#settings.get('files.user_quota_bytes');
    if (quota === 0) return maxUpload;
    return Math.max(0, Math.min(maxUpload, quota - (await this.#usedBytes(em.fork(), ownerId))));
  }

  /** Removes a file's bytes (and open multipart upload), then its row. */
  async #discard(em: EntityManager, file: StoredFile): Promise<void> {
    if (file.uploadId) await this.#storage.abortMultipart(file.objectKey, file.uploadId).catch(() => {});
    if (file.uploadMode === 'single') await this.#storage.remove(stagingKeyOf(file));
    await this.#storage.remove(file.objectKey);
    await em.nativeDelete(StoredFile, { id: file.id });
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

  async #findVisible(em: EntityManager, caller: Caller, id: string, field: string): Promise<StoredFile> {
    requireId(id, field);
    const file = await em.findOne(StoredFile, caller.role === 'admin' ? { id } : { id, owner: caller.userId });
    if (!file) throw notFound('file');
    return file;
  }

  async #availableFile(em: EntityManager, caller: Caller, id: string): Promise<StoredFile> {
    const file = await this.#findVisible(em, caller, id, 'id');
    if (file.status !== 'available') throw failedPrecondition(`the file is ${file.status}, not available`, 'FILE_NOT_AVAILABLE');
    return file;
  }

  /** The owner of the tree a call is about: the caller's own, or (admins) the one named. */
  #treeOwner(caller: Caller, ownerId: string, field = 'owner_id'): string {
    if (ownerId === '' || ownerId === caller.userId) return caller.userId;
    if (!isUuid(ownerId)) throw invalidField(field, 'must be a UUID');
    if (caller.role !== 'admin') throw invalidField(field, "only admins can see other accounts' files");
    return ownerId;
  }

  async #ensureNotInUse(em: EntityManager, fileIds: string[]): Promise<void> {
    if (fileIds.length === 0) return;
    const [row] = await em.execute<{ count: string }[]>(
      `select count(*) as count from jobs
        where status in ('queued', 'running') and jsonb_exists_any(input_file_ids, array[?]::text[])`,
      [fileIds],
    );
    if (Number(row?.count ?? 0) > 0) {
      throw failedPrecondition('the file is an input of a queued or running job: cancel the job or wait for it to finish', 'FILE_IN_USE');
    }
  }

  #checkPath(directory: string, name: string, violations: Violations, prefix = ''): { directory: string; name: string } | undefined {
    const cleanName = cleanFileName(name);
    const cleanDirectory = normalizeDirectory(directory);
    violations.check(cleanName !== '', `${prefix}name`, 'must contain a usable name (path separators, control characters, `..` and leading dots are removed)');
    violations.check(cleanDirectory !== undefined, `${prefix}directory`, 'must be at most 32 levels and 1024 characters');
    return cleanName !== '' && cleanDirectory !== undefined ? { directory: cleanDirectory, name: cleanName } : undefined;
  }

  #checkDeclaredSize(size: number, field: string, violations: Violations): void {
    violations.check(Number.isSafeInteger(size) && size >= 0, field, 'must be the exact size in bytes');
  }

  #checkSha256(sha256: string, field: string, violations: Violations): string | null {
    const value = sha256.trim().toLowerCase();
    if (value === '') return null;
    violations.check(/^[0-9a-f]{64}$/.test(value), field, 'must be 64 hexadecimal characters');
    return value;
  }
}

/**
 * Where the presigned PUT of a single upload writes: not the file's own key, so that the
 * URL, valid until it expires, can never overwrite bytes that were checked.
 */
function stagingKeyOf(file: StoredFile): string {
  return `${stagingPrefix}${file.owner}/${file.id}`;
}

const stagingPrefix = 'uploads/';

/** Another upload of the same caller holds this request_id. */
class DuplicateRequest extends Error {}

function sizeMismatch(message: string): DomainError {
  return new DomainError('invalid_argument', message, { reason: 'SIZE_MISMATCH', violations: [{ field: 'size', description: message }] });
}

function contentTypeNotAllowed(contentType: string): DomainError {
  return new DomainError('invalid_argument', `files of type ${contentType} are not allowed here`, {
    reason: 'CONTENT_TYPE_NOT_ALLOWED',
    metadata: { content_type: contentType },
    // The file's type as sniffed from its bytes, whatever the request claimed.
    violations: [{ field: 'content_type', description: `the bytes are ${contentType}, which files.allowed_content_types does not allow` }],
  });
}

function fileExists(directory: string, name: string): DomainError {
  return new DomainError('already_exists', `a file named "${name}" already exists in ${directory}`, { reason: 'FILE_EXISTS', violations: [{ field: 'name', description: 'is taken in this directory' }] });
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
