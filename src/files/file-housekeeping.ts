import type { EntityManager } from '../platform/db/orm.ts';
import { isUuid } from '../platform/ids.ts';
import { isNotFoundError, type ObjectStorage } from '../platform/storage/object-storage.ts';
import { StoredFile } from './entities.ts';
import { discardFile, stagingPrefix } from './file-rules.ts';

/**
 * The sweeps the maintenance schedule runs: what uploads leave behind when they are
 * abandoned, and what presigned URLs let into storage beyond what was declared.
 */
export class FileHousekeeping {
  readonly #storage: ObjectStorage;

  constructor(deps: { storage: ObjectStorage }) {
    this.#storage = deps.storage;
  }

  /** Aborts uploads past their expiry and deletes failed uploads a day old; returns how many went. */
  async cleanupStaleUploads(em: EntityManager): Promise<number> {
    const stale = await em.find(
      StoredFile,
      {
        $or: [
          { status: 'uploading', uploadExpiresAt: { $lt: new Date() } },
          { status: 'failed', updatedAt: { $lt: new Date(Date.now() - 24 * 3_600_000) } },
        ],
      },
      { limit: 500 },
    );
    for (const file of stale) await discardFile(this.#storage, em.fork(), file);
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
      const live = new Map(
        (await em.find(StoredFile, { id: { $in: ids }, status: 'uploading', uploadMode: 'single' })).map((file) => [file.id, file]),
      );
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
    const open = await em.find(
      StoredFile,
      { status: 'uploading', uploadMode: 'multipart', uploadId: { $ne: null } },
      { orderBy: { id: 'asc' }, limit: 1000 },
    );
    let failed = 0;
    for (const file of open) {
      const parts = await this.#storage.listParts(file.objectKey, file.uploadId!).catch((error: unknown) => {
        if (isNotFoundError(error)) return [];
        throw error;
      });
      const total = parts.reduce((sum, part) => sum + part.size, 0);
      if (total <= file.size && parts.every((part) => part.size <= file.partSize!)) continue;
      // Only while still uploading: a completion that got there first decided already.
      const claimed = await em.nativeUpdate(
        StoredFile,
        { id: file.id, status: 'uploading' },
        { status: 'failed', uploadId: null, updatedAt: new Date() },
      );
      if (claimed > 0) {
        await this.#storage.abortMultipart(file.objectKey, file.uploadId!).catch(() => {});
        failed += 1;
      }
    }
    return failed;
  }
}
