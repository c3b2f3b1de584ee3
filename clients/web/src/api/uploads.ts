import { Code, ConnectError } from '@connectrpc/connect';
import { uploadFile, xhrPut } from '@yardmaster/client/web';
import type { File as StoredFile } from '@gen/yardmaster/v1/files_pb.ts';
import { client } from './client.ts';

/** Parts of a multipart upload sent at once. */
const partConcurrency = 3;

export interface UploadProgress {
  /** Bytes storage has received so far. */
  loaded: number;
  total: number;
}

/** Where a transfer is: asking for URLs, sending the bytes, then the server's checks. */
export type UploadPhase = 'preparing' | 'sending' | 'completing';

export interface Transfer {
  /** The file as the server has it once storage holds every byte and the checks passed. */
  done: Promise<StoredFile>;
  /** Stops the transfer: the requests in flight are cancelled and the upload is given up (AbortUpload). */
  abort(): void;
}

/**
 * Uploads a file from the page straight to storage with the typed client's `uploadFile`:
 * CreateUpload gives one presigned URL, or one per part (sent `partConcurrency` at a time,
 * each part's ETag read from storage's reply, which its CORS rule must expose), then
 * CompleteUpload has the server check what storage holds. Bytes go with XMLHttpRequest
 * (`xhrPut`), the only browser API that reports upload progress.
 */
export function startUpload(
  file: Blob & { name: string },
  directory: string,
  events: { onProgress?(progress: UploadProgress): void; onPhase?(phase: UploadPhase): void } = {},
): Transfer {
  const controller = new AbortController();
  let phase: UploadPhase = 'preparing';
  const enter = (next: UploadPhase) => {
    if (phase === next) return;
    phase = next;
    events.onPhase?.(next);
  };
  events.onPhase?.(phase);
  const done = uploadFile(client, {
    data: file,
    name: file.name,
    directory,
    // A hint only: the server sniffs the type from the bytes.
    contentType: file.type,
    requestId: crypto.randomUUID(),
    put: xhrPut,
    parallelParts: partConcurrency,
    signal: controller.signal,
    onProgress: (progress) => {
      enter(progress.loaded >= progress.total ? 'completing' : 'sending');
      events.onProgress?.(progress);
    },
  });
  return { done, abort: () => controller.abort() };
}

/** Whether a transfer ended because `abort()` was called. */
export function isCancelled(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Canceled;
}
