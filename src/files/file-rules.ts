import { visibleTo, type Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { DomainError, notFound, type Violations } from '../platform/domain-errors.ts';
import { requireId } from '../platform/ids.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import { StoredFile } from './entities.ts';
import { cleanFileName, normalizeDirectory } from '../platform/file-paths.ts';
import { fileReasons } from './file-reasons.ts';

/**
 * The rules every part of the files area keeps alike: who sees a file, where its bytes
 * live, what a usable path is, and how a file goes (bytes first, then its row).
 */

/** The key of a file's checked bytes. */
export function objectKeyOf(ownerId: string, fileId: string): string {
  return `files/${ownerId}/${fileId}`;
}

/** Where single uploads are staged (see stagingKeyOf). */
export const stagingPrefix = 'uploads/';

/**
 * Where the presigned PUT of a single upload writes: not the file's own key, so that the
 * URL, valid until it expires, can never overwrite bytes that were checked.
 */
export function stagingKeyOf(file: StoredFile): string {
  return `${stagingPrefix}${file.owner}/${file.id}`;
}

/** The file `id` if the caller may see it (its owner, or an admin); NotFound otherwise. */
export async function findVisibleFile(em: EntityManager, caller: Caller, id: string, field: string): Promise<StoredFile> {
  requireId(id, field);
  const file = await em.findOne(StoredFile, { id, ...visibleTo(caller) });
  if (!file) throw notFound('file');
  return file;
}

/**
 * Whether a file is an input of a job whose active lease the account holds: what an
 * external worker may read besides its own files. The jobs area keeps the leases; the
 * composition root supplies this.
 */
export interface HeldInputFiles {
  holds(em: EntityManager, accountId: string, fileId: string): Promise<boolean>;
}

/** For a files area that serves no external workers. */
export const noHeldInputFiles: HeldInputFiles = { holds: async () => false };

/**
 * The file `id` if the caller may read it: one it may see, or, for a worker, an input of
 * a job it holds. Only reads ask this; a worker changes and lists nothing but its own.
 */
export async function findReadableFile(
  em: EntityManager,
  caller: Caller,
  id: string,
  field: string,
  heldInputs: HeldInputFiles,
): Promise<StoredFile> {
  requireId(id, field);
  const file = await em.findOne(StoredFile, { id, ...visibleTo(caller) });
  if (file) return file;
  if (caller.role === 'worker' && (await heldInputs.holds(em, caller.userId, id))) {
    const input = await em.findOne(StoredFile, { id });
    if (input) return input;
  }
  throw notFound('file');
}

/** The cleaned directory and name, or violations (fields named with `prefix`) when nothing usable is left. */
export function checkPath(
  directory: string,
  name: string,
  violations: Violations,
  prefix = '',
): { directory: string; name: string } | undefined {
  const cleanName = cleanFileName(name);
  const cleanDirectory = normalizeDirectory(directory);
  violations.check(
    cleanName !== '',
    `${prefix}name`,
    'must contain a usable name (path separators, control characters, `..` and leading dots are removed)',
  );
  violations.check(cleanDirectory !== undefined, `${prefix}directory`, 'must be at most 32 levels and 1024 characters');
  return cleanName !== '' && cleanDirectory !== undefined ? { directory: cleanDirectory, name: cleanName } : undefined;
}

/** Removes a file's bytes (and open multipart upload), then its row. */
export async function discardFile(storage: ObjectStorage, em: EntityManager, file: StoredFile): Promise<void> {
  if (file.uploadId) await storage.abortMultipart(file.objectKey, file.uploadId).catch(() => {});
  if (file.uploadMode === 'single') await storage.remove(stagingKeyOf(file));
  await storage.remove(file.objectKey);
  await em.nativeDelete(StoredFile, { id: file.id });
}

export function fileExists(directory: string, name: string): DomainError {
  return new DomainError('already_exists', `a file named "${name}" already exists in ${directory}`, {
    reason: fileReasons.FILE_EXISTS,
    violations: [{ field: 'name', description: 'is taken in this directory' }],
  });
}
