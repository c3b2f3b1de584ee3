import type { ServiceImpl } from '@connectrpc/connect';
import type { UniversalHandlerOptions } from '@connectrpc/connect/protocol';
import { durationMs, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { FilesService as FilesServiceDesc, UploadRequest } from '../../gen/yardmaster/v1/files_pb.ts';
import { invalidField } from '../platform/domain-errors.ts';
import { callerOf, directFramesKey, entityManagerOf, recordCall } from '../server/context.ts';
import { downloadMessages } from './download-rpc.ts';
import { fileToProto } from './file-messages.ts';
import type { FileCatalogue } from './file-catalogue.ts';
import type { FileDownloads } from './file-downloads.ts';
import type { FileUploads } from './file-uploads.ts';

/**
 * How FilesService answers: never compressed. Its bulk is file bytes, mostly compressed
 * already (archives, images, models), and gzip of every Download message cost the server
 * about 30 ms of CPU per MiB and the client as much again to undo, for nothing: a client
 * that offers gzip (connect-node does by default) got a quarter of the download rate of one
 * that did not. Its other answers are a few KiB of metadata. Compressed requests are still
 * accepted.
 */
export const filesServiceOptions: Partial<UniversalHandlerOptions> = { compressMinBytes: Number.MAX_SAFE_INTEGER };

function bigintNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) throw invalidField(field, 'is out of range');
  return Number(value);
}

/** The chunks after the metadata message; anything else there is a client error. */
async function* chunksOf(messages: AsyncIterator<UploadRequest>): AsyncGenerator<Uint8Array> {
  for (;;) {
    const next = await messages.next();
    if (next.done) return;
    if (next.value.content.case !== 'chunk') throw invalidField('chunk', 'every message after the first must carry a chunk');
    yield next.value.content.value;
  }
}

export function createFilesRpc({
  uploads,
  catalogue,
  downloads,
}: {
  uploads: FileUploads;
  catalogue: FileCatalogue;
  downloads: FileDownloads;
}): ServiceImpl<typeof FilesServiceDesc> {
  return {
    async createUpload(req, ctx) {
      const plan = await uploads.createUpload(entityManagerOf(ctx), callerOf(ctx), {
        directory: req.directory,
        name: req.name,
        size: bigintNumber(req.size, 'size'),
        contentType: req.contentType,
        sha256: req.sha256,
        requestId: req.requestId,
      });
      return {
        file: fileToProto(plan.file),
        uploadUrl: plan.uploadUrl,
        parts: plan.parts,
        partSize: BigInt(plan.partSize),
        expireTime: timestampFromDate(plan.expiresAt),
      };
    },

    async completeUpload(req, ctx) {
      const file = await uploads.completeUpload(entityManagerOf(ctx), callerOf(ctx), req.fileId, req.parts);
      return { file: fileToProto(file) };
    },

    async abortUpload(req, ctx) {
      await uploads.abortUpload(entityManagerOf(ctx), callerOf(ctx), req.fileId);
      return {};
    },

    async upload(requests, ctx) {
      const messages = requests[Symbol.asyncIterator]();
      const first = await messages.next();
      if (first.done || first.value.content.case !== 'metadata')
        throw invalidField('metadata', 'the first message must carry the metadata');
      const metadata = first.value.content.value;
      const file = await uploads.uploadStream(
        entityManagerOf(ctx),
        callerOf(ctx),
        {
          directory: metadata.directory,
          name: metadata.name,
          size: bigintNumber(metadata.size, 'metadata.size'),
          contentType: metadata.contentType,
          sha256: metadata.sha256,
        },
        chunksOf(messages),
        ctx.signal,
      );
      return { file: fileToProto(file) };
    },

    async getFile(req, ctx) {
      return { file: fileToProto(await catalogue.get(entityManagerOf(ctx), callerOf(ctx), req.id)) };
    },

    async listFiles(req, ctx) {
      const listing = await catalogue.list(
        entityManagerOf(ctx),
        callerOf(ctx),
        { directory: req.directory, recursive: req.recursive, ownerId: req.ownerId },
        req,
      );
      return { files: listing.files.map(fileToProto), directories: listing.directories, nextPageToken: listing.nextPageToken };
    },

    async moveFile(req, ctx) {
      return {
        file: fileToProto(await catalogue.move(entityManagerOf(ctx), callerOf(ctx), req.id, { directory: req.directory, name: req.name })),
      };
    },

    async deleteFile(req, ctx) {
      await catalogue.delete(entityManagerOf(ctx), callerOf(ctx), req.id);
      return {};
    },

    async deleteDirectory(req, ctx) {
      // The directory alone does not say whose tree it was.
      if (req.ownerId !== '') recordCall(ctx, { target: `${req.ownerId}:${req.directory}` });
      const deleted = await catalogue.deleteDirectory(entityManagerOf(ctx), callerOf(ctx), {
        directory: req.directory,
        confirm: req.confirm,
        ownerId: req.ownerId,
      });
      return { deletedFiles: BigInt(deleted) };
    },

    async getDownloadUrl(req, ctx) {
      const expiresMs = req.expires ? durationMs(req.expires) : undefined;
      const { url, expiresAt } = await downloads.downloadUrl(entityManagerOf(ctx), callerOf(ctx), req.id, expiresMs);
      return { url, expireTime: timestampFromDate(expiresAt) };
    },

    async *download(req, ctx) {
      recordCall(ctx, { target: req.id });
      const { file, bytes } = await downloads.openDownload(
        entityManagerOf(ctx),
        callerOf(ctx),
        req.id,
        bigintNumber(req.offset, 'offset'),
        bigintNumber(req.length, 'length'),
      );
      if (!bytes) {
        yield { file: fileToProto(file) };
        return;
      }
      yield* downloadMessages(fileToProto(file), bytes, ctx.values.get(directFramesKey), ctx.signal);
    },

    async getStorageUsage(req, ctx) {
      const usage = await catalogue.usage(entityManagerOf(ctx), callerOf(ctx), req.userId);
      return {
        bytes: BigInt(usage.bytes),
        fileCount: BigInt(usage.fileCount),
        quotaBytes: BigInt(usage.quotaBytes),
        uploadingBytes: BigInt(usage.uploadingBytes),
        byContentType: usage.byContentType.map((entry) => ({
          contentType: entry.contentType,
          bytes: BigInt(entry.bytes),
          fileCount: BigInt(entry.fileCount),
        })),
      };
    },
  };
}
