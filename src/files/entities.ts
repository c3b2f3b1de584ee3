import { defineEntity, p } from '@mikro-orm/core';
import { User } from '../auth/entities.ts';
import { Job } from '../jobs/entities.ts';

export const fileStatuses = ['uploading', 'available', 'failed'] as const;
export type FileStatusName = (typeof fileStatuses)[number];
export const uploadModes = ['single', 'multipart', 'stream'] as const;
export type UploadMode = (typeof uploadModes)[number];

const now = () => new Date();

const StoredFileSchema = defineEntity({
  name: 'StoredFile',
  tableName: 'files',
  indexes: [
    { properties: ['owner', 'directory', 'name', 'id'] },
    { properties: ['status', 'uploadExpiresAt'] },
    // One live file per path; a failed upload does not hold its name.
    {
      name: 'files_owner_path_unique',
      expression: `create unique index "files_owner_path_unique" on "files" ("owner_id", "directory", "name") where "status" <> 'failed'`,
    },
  ],
  uniques: [{ properties: ['owner', 'requestId'] }],
  properties: {
    id: p.uuid().primary(),
    owner: () => p.manyToOne(User).mapToPk().deleteRule('cascade'),
    /** `/` or `/a/b`: normalised, no trailing slash. */
    directory: p.string().length(1024),
    name: p.string().length(255),
    /** Declared size while uploading; the verified size once available. */
    size: p.bigint('number'),
    contentType: p.string().length(255),
    /** What the client claimed, kept as a hint for text files, which have no magic bytes. */
    declaredContentType: p.string().length(255),
    sha256: p.string().length(64).nullable(),
    declaredSha256: p.string().length(64).nullable(),
    status: p.enum(fileStatuses),
    /** Where the bytes are: chosen by the server, independent of the name (moves are free). */
    objectKey: p.string().length(512),
    uploadMode: p.enum(uploadModes),
    /** S3 multipart upload id, while a multipart upload is open. */
    uploadId: p.string().length(1024).nullable(),
    partSize: p.bigint('number').nullable(),
    uploadExpiresAt: p.datetime().nullable(),
    /** The job whose output this is. */
    job: () => p.manyToOne(Job).mapToPk().nullable().deleteRule('set null').index(),
    requestId: p.string().length(128).nullable(),
    createdAt: p.datetime().onCreate(now),
    updatedAt: p.datetime().onCreate(now).onUpdate(now),
  },
});
export class StoredFile extends StoredFileSchema.class {}
StoredFileSchema.setClass(StoredFile);

export const fileEntities = [StoredFile];
