import { UniqueConstraintViolationException, type FilterQuery } from '@mikro-orm/core';
import type { Caller } from '../platform/caller.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition, invalidField, notFound, Violations } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import { findPage, type PageRequest } from '../platform/pagination.ts';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { ObjectStorage } from '../platform/storage/object-storage.ts';
import { StoredFile } from './entities.ts';
import { normalizeDirectory, rootDirectory } from '../platform/file-paths.ts';
import {
  checkPath,
  discardFile,
  fileExists,
  findReadableFile,
  findVisibleFile,
  noHeldInputFiles,
  type HeldInputFiles,
} from './file-rules.ts';
import type { filesSettings } from './files-settings.ts';
import { fileReasons } from './file-reasons.ts';

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

/**
 * The files people keep: looked up, listed by directory, moved, deleted (one, a directory,
 * or all of an account's), and counted against the quota.
 */
export class FileCatalogue {
  readonly #storage: ObjectStorage;
  readonly #settings: SettingsReader<typeof filesSettings>;
  readonly #heldInputs: HeldInputFiles;

  constructor(deps: { storage: ObjectStorage; settings: SettingsReader<typeof filesSettings>; heldInputs?: HeldInputFiles }) {
    this.#storage = deps.storage;
    this.#settings = deps.settings;
    this.#heldInputs = deps.heldInputs ?? noHeldInputFiles;
  }

  async get(em: EntityManager, caller: Caller, id: string): Promise<StoredFile> {
    return findReadableFile(em, caller, id, 'id', this.#heldInputs);
  }

  async list(
    em: EntityManager,
    caller: Caller,
    input: { directory: string; recursive: boolean; ownerId: string },
    page: PageRequest,
  ): Promise<FileListing> {
    const owner = treeOwner(caller, input.ownerId);
    const directory = normalizeDirectory(input.directory);
    if (directory === undefined) throw invalidField('directory', 'is too long or too deep');
    const below = `${directory === rootDirectory ? '' : directory}/`;
    const where: FilterQuery<StoredFile> = input.recursive
      ? directory === rootDirectory
        ? { owner }
        : { owner, $or: [{ directory }, { directory: { $like: `${escapeLike(below)}%` } }] }
      : { owner, directory };
    const result = await findPage(em, StoredFile, {
      where,
      orderBy: { directory: 'asc', name: 'asc', id: 'asc' },
      query: ['files', owner, directory, input.recursive],
      page,
    });
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
    const file = await findVisibleFile(em, caller, id, 'id');
    const violations = new Violations();
    const path = checkPath(input.directory || file.directory, input.name || file.name, violations);
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
    const file = await findVisibleFile(em, caller, id, 'id');
    await ensureNotInUse(em, [file.id]);
    await discardFile(this.#storage, em, file);
  }

  /** Deletes every file under `directory` (recursively); returns how many. */
  async deleteDirectory(
    em: EntityManager,
    caller: Caller,
    input: { directory: string; confirm: string; ownerId: string },
  ): Promise<number> {
    const owner = treeOwner(caller, input.ownerId);
    const directory = normalizeDirectory(input.directory);
    if (directory === undefined || directory === rootDirectory) throw invalidField('directory', 'must name a directory below /');
    if (normalizeDirectory(input.confirm) !== directory) throw invalidField('confirm', 'must equal the directory to delete');
    const where = { owner, $or: [{ directory }, { directory: { $like: `${escapeLike(directory)}/%` } }] };
    const files = await em.find(StoredFile, where, { fields: ['id'] });
    await ensureNotInUse(
      em,
      files.map((file) => file.id),
    );
    let deleted = 0;
    for (;;) {
      const batch = await em.fork().find(StoredFile, where, { limit: 100 });
      for (const file of batch) await discardFile(this.#storage, em.fork(), file);
      deleted += batch.length;
      if (batch.length < 100) return deleted;
    }
  }

  /** Removes every file of an account with its bytes, before the account itself goes. */
  async deleteAccountFiles(em: EntityManager, userId: string): Promise<void> {
    for (;;) {
      const batch = await em.fork().find(StoredFile, { owner: userId }, { limit: 100 });
      for (const file of batch) await discardFile(this.#storage, em.fork(), file);
      if (batch.length < 100) return;
    }
  }

  async usage(em: EntityManager, caller: Caller, userId: string): Promise<StorageUsage> {
    const owner = treeOwner(caller, userId, 'user_id');
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
}

/** The owner of the tree a call is about: the caller's own, or (admins) the one named. */
function treeOwner(caller: Caller, ownerId: string, field = 'owner_id'): string {
  if (ownerId === '' || ownerId === caller.userId) return caller.userId;
  if (!isUuid(ownerId)) throw invalidField(field, 'must be a UUID');
  if (caller.role !== 'admin') throw invalidField(field, "only admins can see other accounts' files");
  return ownerId;
}

async function ensureNotInUse(em: EntityManager, fileIds: string[]): Promise<void> {
  if (fileIds.length === 0) return;
  const [row] = await em.execute<{ count: string }[]>(
    `select count(*) as count from jobs
      where status in ('queued', 'running') and jsonb_exists_any(input_file_ids, array[?]::text[])`,
    [fileIds],
  );
  if (Number(row?.count ?? 0) > 0) {
    throw failedPrecondition(
      'the file is an input of a queued or running job: cancel the job or wait for it to finish',
      fileReasons.FILE_IN_USE,
    );
  }
}
