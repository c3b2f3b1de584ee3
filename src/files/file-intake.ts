import { createHash } from 'node:crypto';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '../platform/db/orm.ts';
import { DomainError, failedPrecondition } from '../platform/domain-errors.ts';
import { newId } from '../platform/ids.ts';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import { isAllowedContentType, sniffContentType, sniffSampleBytes } from './content-sniffing.ts';
import { StoredFile, type UploadMode } from './entities.ts';
import { discardFile, fileExists, objectKeyOf } from './file-rules.ts';
import type { filesSettings } from './files-settings.ts';
import { fileReasons } from './file-reasons.ts';

const mib = 1024 * 1024;
/** Parts of streamed uploads: the memory one upload holds at most. */
const streamPartBytes = 8 * mib;

/** What a checked upload turned out to be. */
export interface VerifiedContent {
  size: number;
  contentType: string;
  sha256: string | null;
}

/** What a new file is reserved with: its cleaned path, declared content and how it is uploaded. */
export interface Reservation {
  directory: string;
  name: string;
  size: number;
  contentType: string;
  declaredSha256: string | null;
  mode: UploadMode;
  requestId: string | null;
  jobId: string | null;
}

/** Another upload of the same caller holds this request_id. */
export class DuplicateRequest extends Error {}

/**
 * How bytes become a file, on every upload path: the row reserved under the upload limit
 * and the quota, the bytes received or found in storage, and the checks that make it
 * AVAILABLE. Every failure removes what it put in storage, so an available row always has
 * its object and an object always has its row.
 */
export class FileIntake {
  readonly #storage: ObjectStorage;
  readonly #settings: SettingsReader<typeof filesSettings>;

  constructor(deps: { storage: ObjectStorage; settings: SettingsReader<typeof filesSettings> }) {
    this.#storage = deps.storage;
    this.#settings = deps.settings;
  }

  /**
   * Creates the UPLOADING row after the limits: the declared size against the upload
   * limit and, under a per-account lock so that concurrent uploads cannot both slip
   * under it, against the quota.
   */
  async reserve(em: EntityManager, ownerId: string, input: Reservation): Promise<StoredFile> {
    const maxUpload = this.#settings.get('files.max_upload_bytes');
    if (input.size > maxUpload) {
      throw new DomainError('invalid_argument', `the file is larger than the upload limit (${maxUpload} bytes)`, {
        reason: fileReasons.FILE_TOO_LARGE,
        violations: [{ field: input.mode === 'stream' ? 'metadata.size' : 'size', description: `must be at most ${maxUpload} bytes` }],
      });
    }
    const id = newId();
    try {
      return await em.transactional(async (tx) => {
        await lockAccountFiles(tx, ownerId);
        // A retry that raced the first call: under the lock, the first one's row is visible.
        if (input.requestId && (await tx.count(StoredFile, { owner: ownerId, requestId: input.requestId })) > 0)
          throw new DuplicateRequest();
        await this.#checkQuota(tx, ownerId, input.size, 'the upload');
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
          objectKey: objectKeyOf(ownerId, id),
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

  /**
   * Streams a reserved file's bytes into storage. The bytes are counted, hashed and sniffed
   * on the way; more bytes than declared (or, with no declared size, than the upload limit
   * and the quota leave), or a type that is not allowed, stops the upload at once.
   */
  async receive(
    em: EntityManager,
    file: StoredFile,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
    limits: { declaredSize: number | undefined },
  ): Promise<StoredFile> {
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
              ? new DomainError('resource_exhausted', 'the output is larger than the upload limit or the remaining quota allow', {
                  reason: fileReasons.QUOTA_EXCEEDED,
                })
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
      await this.accept(
        em,
        file,
        { size, contentType: await sniffContentType(sample, file.declaredContentType), sha256: hash.digest('hex') },
        limits.declaredSize !== undefined,
      );
      return file;
    } catch (error) {
      await discardFile(this.#storage, em, file).catch(() => {});
      throw error;
    }
  }

  /**
   * The checks every upload path ends with; on success the file is AVAILABLE, on
   * failure it is FAILED without its bytes, and the error says why.
   */
  async accept(em: EntityManager, file: StoredFile, content: VerifiedContent, sizeDeclared: boolean): Promise<void> {
    let failure: DomainError | undefined;
    if (sizeDeclared && content.size !== file.size)
      failure = sizeMismatch(`storage holds ${content.size} bytes, but ${file.size} were declared`);
    if (!failure && !isAllowedContentType(content.contentType, this.#settings.get('files.allowed_content_types')))
      failure = contentTypeNotAllowed(content.contentType);
    if (!failure && file.declaredSha256 && content.sha256 !== file.declaredSha256) {
      failure = new DomainError('invalid_argument', 'the SHA-256 of the bytes does not match the declared one', {
        reason: fileReasons.CHECKSUM_MISMATCH,
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
      {
        status: 'available',
        size: content.size,
        contentType: content.contentType,
        sha256: content.sha256,
        uploadExpiresAt: null,
        uploadId: null,
        updatedAt: new Date(),
      },
    );
    if (accepted === 0) {
      const current = await em.fork().findOne(StoredFile, file.id);
      if (current?.status === 'available') {
        // A concurrent completion of the same upload got there first, with the same bytes.
        Object.assign(file, {
          status: current.status,
          size: current.size,
          contentType: current.contentType,
          sha256: current.sha256,
          uploadExpiresAt: null,
          uploadId: null,
        });
        return;
      }
      await this.#storage.remove(file.objectKey).catch(() => {});
      throw failedPrecondition(
        'this upload was removed while its bytes were arriving (it expired or was aborted)',
        fileReasons.UPLOAD_GONE,
      );
    }
    Object.assign(file, {
      status: 'available',
      size: content.size,
      contentType: content.contentType,
      sha256: content.sha256,
      uploadExpiresAt: null,
      uploadId: null,
    });
  }

  async #checkSniffedType(sample: Uint8Array, claimed: string): Promise<void> {
    const contentType = await sniffContentType(sample, claimed);
    if (!isAllowedContentType(contentType, this.#settings.get('files.allowed_content_types'))) throw contentTypeNotAllowed(contentType);
  }

  /**
   * Checks that `addedBytes` more fit the account's quota, under the account's lock (so
   * that concurrent additions cannot both slip under it): for files an account is given
   * rather than uploads itself. Runs in the caller's transaction.
   */
  async checkQuotaFor(tx: EntityManager, ownerId: string, addedBytes: number, what: string): Promise<void> {
    await lockAccountFiles(tx, ownerId);
    await this.#checkQuota(tx, ownerId, addedBytes, what);
  }

  async #checkQuota(tx: EntityManager, ownerId: string, addedBytes: number, what: string): Promise<void> {
    const quota = this.#settings.get('files.user_quota_bytes');
    if (quota === 0) return;
    const used = await this.#usedBytes(tx, ownerId);
    if (used + addedBytes > quota) {
      throw new DomainError('resource_exhausted', `${what} would exceed the storage quota (${used} of ${quota} bytes used)`, {
        reason: fileReasons.QUOTA_EXCEEDED,
        metadata: { used_bytes: String(used), quota_bytes: String(quota) },
      });
    }
  }

  async #usedBytes(em: EntityManager, ownerId: string): Promise<number> {
    const [row] = await em.execute<{ bytes: string }[]>(
      `select coalesce(sum(size), 0) as bytes from files where owner_id = ? and status in ('available', 'uploading')`,
      [ownerId],
    );
    return Number(row?.bytes ?? 0);
  }

  /** How many more bytes an output of unknown size may have: the upload limit, and the quota left. */
  async #remainingAllowance(em: EntityManager, ownerId: string): Promise<number> {
    const maxUpload = this.#settings.get('files.max_upload_bytes');
    const quota = this.#settings.get('files.user_quota_bytes');
    if (quota === 0) return maxUpload;
    return Math.max(0, Math.min(maxUpload, quota - (await this.#usedBytes(em.fork(), ownerId))));
  }
}

/** Serialises the quota checks of one account until the transaction ends. */
async function lockAccountFiles(tx: EntityManager, ownerId: string): Promise<void> {
  await tx.execute('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`files:${ownerId}`]);
}

function sizeMismatch(message: string): DomainError {
  return new DomainError('invalid_argument', message, {
    reason: fileReasons.SIZE_MISMATCH,
    violations: [{ field: 'size', description: message }],
  });
}

function contentTypeNotAllowed(contentType: string): DomainError {
  return new DomainError('invalid_argument', `files of type ${contentType} are not allowed here`, {
    reason: fileReasons.CONTENT_TYPE_NOT_ALLOWED,
    metadata: { content_type: contentType },
    // The file's type as sniffed from its bytes, whatever the request claimed.
    violations: [{ field: 'content_type', description: `the bytes are ${contentType}, which files.allowed_content_types does not allow` }],
  });
}
