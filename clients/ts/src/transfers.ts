import { Code, ConnectError } from '@connectrpc/connect';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';
import type { File as StoredFile } from '../../../gen/yardmaster/v1/files_pb.ts';
import type { YardmasterClient } from './client.ts';
import { YardmasterError } from './errors.ts';
import { createSha256, type Hasher } from './sha256.ts';

/**
 * What to upload. A Blob (a browser File, or in Node.js `fs.openAsBlob(path)`) is read
 * lazily, slice by slice; a stream or async iterable is read once, in order; a Uint8Array
 * is already in memory.
 */
export type UploadSource = Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Uint8Array;

/** Bytes sent or received so far, of `total`. */
export interface TransferProgress {
  loaded: number;
  total: number;
}

/** One PUT to a presigned storage URL. */
export interface PutRequest {
  url: string;
  body: Blob | Uint8Array;
  size: number;
  signal: AbortSignal;
  /** Bytes of this body sent so far (call it as they go, if the platform tells). */
  onProgress: (loaded: number) => void;
}

/** Sends one body to a presigned URL and returns the ETag storage answered. */
export type PutFunction = (request: PutRequest) => Promise<{ etag: string }>;

export interface UploadFileOptions {
  /** Directory to put the file in (default `/`). */
  directory?: string;
  /** File name; default the Blob's name when it is a File. */
  name?: string;
  data: UploadSource;
  /** Exact size in bytes; required for streams and iterables. */
  size?: number;
  /** A hint only: the server sniffs the type from the bytes. */
  contentType?: string;
  /**
   * A hex SHA-256 the server checks, or `true` to compute it: for a Blob or Uint8Array
   * before the upload (one extra read; the server then checks it); for a stream sent with
   * `method: 'stream'` while it is read (the client then compares it with the digest the
   * server computed, and deletes the file and throws DataLoss CHECKSUM_MISMATCH when they
   * differ). A stream sent presigned cannot be hashed up front: pass its hex digest instead.
   */
  sha256?: boolean | string;
  onProgress?: (progress: TransferProgress) => void;
  /** Aborting cancels the transfer and the upload (AbortUpload): nothing stays behind. */
  signal?: AbortSignal;
  /** Presigned multipart uploads: parts in flight at once (each held in memory only when the source is a stream). Default 4. */
  parallelParts?: number;
  /** How a part is sent: default `fetch`; browsers may pass `xhrPut` (from `@yardmaster/client/web`) for per-byte progress. */
  put?: PutFunction;
  /** Attempts per part PUT before the upload fails. Default 3. */
  putAttempts?: number;
  /**
   * `presigned` (default): CreateUpload, PUT the bytes straight to storage (one URL, or a
   * URL per part for large files), CompleteUpload. `stream`: the Upload RPC through the
   * server (client streaming: gRPC, or Connect/gRPC-Web over HTTP/2; not in browsers).
   */
  method?: 'presigned' | 'stream';
  /** Idempotency key of CreateUpload. */
  requestId?: string;
  /** The incremental hash used for `sha256: true` (Node.js passes node:crypto's). */
  hasher?: () => Hasher;
}

/**
 * Bytes per Upload message: just under 1 MiB, so that a message (the chunk with its field
 * header) fits the 1 MiB buffer protobuf-es's writer grows to, instead of 2 MiB allocated
 * and zeroed for every message at exactly 1 MiB of chunk.
 */
export const streamChunkBytes = 1024 * 1024 - 16;

/** PUT with fetch: progress is reported when the body has been sent. */
export const fetchPut: PutFunction = async ({ url, body, size, signal, onProgress }) => {
  const response = await fetch(url, { method: 'PUT', body: body as BodyInit, signal });
  const reply = await response.text();
  if (!response.ok) throw storageError(response.status, reply);
  onProgress(size);
  return { etag: response.headers.get('etag') ?? '' };
};

export function storageError(status: number, reply: string): YardmasterError {
  const code = status === 403 ? Code.PermissionDenied : status === 404 ? Code.NotFound : status >= 500 ? Code.Unavailable : Code.Internal;
  const detail = /<Code>([^<]*)<\/Code>/.exec(reply)?.[1];
  return new YardmasterError(new ConnectError(`storage answered HTTP ${status}${detail ? ` (${detail})` : ''}`, code));
}

/** Reads a source in order, exactly `length` bytes at a time. */
class SequentialReader {
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Uint8Array | undefined;
  readonly #hasher: Hasher | undefined;

  constructor(source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, hasher: Hasher | undefined) {
    const iterable: AsyncIterable<Uint8Array> =
      Symbol.asyncIterator in source ? (source as AsyncIterable<Uint8Array>) : readableIterable(source as ReadableStream<Uint8Array>);
    this.#iterator = iterable[Symbol.asyncIterator]();
    this.#hasher = hasher;
  }

  /** The next `length` bytes: fewer means the source is shorter than declared, an error. */
  async read(length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      let chunk = this.#pending;
      this.#pending = undefined;
      if (!chunk) {
        const next = await this.#iterator.next();
        if (next.done) throw invalidSize(`the data ended after fewer bytes than the declared size`);
        chunk = next.value;
      }
      const take = Math.min(chunk.length, length - filled);
      out.set(chunk.subarray(0, take), filled);
      filled += take;
      if (take < chunk.length) this.#pending = chunk.subarray(take);
    }
    this.#hasher?.update(out);
    return out;
  }

  /** Fails when the source holds more than the declared size. */
  async expectEnd(): Promise<void> {
    if (this.#pending?.length) throw invalidSize('the data is longer than the declared size');
    for (;;) {
      const next = await this.#iterator.next();
      if (next.done) return;
      if (next.value.length > 0) throw invalidSize('the data is longer than the declared size');
    }
  }

  async close(): Promise<void> {
    await this.#iterator.return?.();
  }
}

function invalidSize(message: string): YardmasterError {
  return new YardmasterError(new ConnectError(message, Code.InvalidArgument));
}

async function* readableIterable(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** A hex SHA-256 of a Blob or byte array, read as a stream (constant memory). */
async function digestOf(data: Blob | Uint8Array, hasher: Hasher, signal: AbortSignal | undefined): Promise<string> {
  if (data instanceof Uint8Array) {
    hasher.update(data);
    return hasher.digest();
  }
  for await (const chunk of readableIterable(data.stream())) {
    signal?.throwIfAborted();
    hasher.update(chunk);
  }
  return hasher.digest();
}

/** Progress of several bodies in flight, reported only when it grows. */
class ProgressMeter {
  #done = 0;
  #reported = -1;
  readonly #inFlight = new Map<number, number>();
  readonly total: number;
  readonly report: ((progress: TransferProgress) => void) | undefined;
  constructor(total: number, report: ((progress: TransferProgress) => void) | undefined) {
    this.total = total;
    this.report = report;
  }
  set(part: number, loaded: number): void {
    this.#inFlight.set(part, loaded);
    this.#emit();
  }
  finish(part: number, size: number): void {
    this.#inFlight.delete(part);
    this.#done += size;
    this.#emit();
  }
  #emit(): void {
    let loaded = this.#done;
    for (const value of this.#inFlight.values()) loaded += value;
    loaded = Math.min(loaded, this.total);
    if (loaded <= this.#reported) return;
    this.#reported = loaded;
    this.report?.({ loaded, total: this.total });
  }
}

/**
 * Uploads a file: presigned (single PUT, or multipart with `parallelParts` parts in flight)
 * or through the Upload stream. Memory stays bounded whatever the size: a Blob is sliced
 * lazily; a stream is read one part at a time (a file small enough for a single PUT, at
 * most 64 MiB, is read whole). On failure or abort the upload is abandoned (AbortUpload),
 * so no UPLOADING file stays behind. Returns the file, AVAILABLE.
 */
export async function uploadFile(client: YardmasterClient, options: UploadFileOptions): Promise<StoredFile> {
  const data = options.data;
  const isBlob = typeof Blob !== 'undefined' && data instanceof Blob;
  const size = options.size ?? (isBlob ? data.size : data instanceof Uint8Array ? data.length : undefined);
  if (size === undefined) throw invalidSize('size is required when uploading a stream');
  const name = options.name ?? (isBlob && 'name' in data && typeof data.name === 'string' ? data.name : undefined);
  if (!name) throw new YardmasterError(new ConnectError('name is required', Code.InvalidArgument));
  const hasher = options.hasher ?? createSha256;
  const signal = options.signal;
  signal?.throwIfAborted();

  let sha256 = typeof options.sha256 === 'string' ? options.sha256 : '';
  let streamHasher: Hasher | undefined;
  if (options.sha256 === true) {
    if (isBlob || data instanceof Uint8Array) sha256 = await digestOf(data as Blob | Uint8Array, hasher(), signal);
    else if (options.method === 'stream') streamHasher = hasher();
    else {
      // Storage computes no digest of a presigned upload unless one was declared up front.
      throw new YardmasterError(
        new ConnectError(
          'sha256: true needs a Blob or bytes for a presigned upload of a stream (or method "stream", or the hex digest)',
          Code.InvalidArgument,
        ),
      );
    }
  }
  const meter = new ProgressMeter(size, options.onProgress);
  const reader = isBlob || data instanceof Uint8Array ? undefined : new SequentialReader(data as AsyncIterable<Uint8Array>, streamHasher);
  const slice = async (start: number, end: number): Promise<Blob | Uint8Array> => {
    if (reader) return reader.read(end - start);
    return (data as Blob | Uint8Array).slice(start, end);
  };
  const metadata = { directory: options.directory ?? '/', name, size: BigInt(size), contentType: options.contentType ?? '', sha256 };

  let file: StoredFile | undefined;
  try {
    if (options.method === 'stream') {
      file = await uploadThroughServer(client, metadata, size, slice, meter, signal);
    } else {
      file = await uploadPresigned(client, { ...metadata, requestId: options.requestId ?? '' }, size, slice, meter, options);
    }
    if (reader) await reader.expectEnd();
  } catch (error) {
    throw signal?.aborted ? YardmasterError.from(signal.reason, Code.Canceled) : YardmasterError.from(error);
  } finally {
    await reader?.close().catch(() => undefined);
  }
  if (streamHasher) {
    const computed = streamHasher.digest();
    if (computed !== file.sha256) {
      await client.files.deleteFile({ id: file.id }).catch(() => undefined);
      throw checksumMismatch(computed, file.sha256);
    }
  }
  return file;
}

function checksumMismatch(expected: string, actual: string): YardmasterError {
  const info = { desc: ErrorInfoSchema, value: { reason: 'CHECKSUM_MISMATCH', metadata: { expected, actual } } };
  return new YardmasterError(new ConnectError(`SHA-256 mismatch: expected ${expected}, got ${actual}`, Code.DataLoss, undefined, [info]));
}

type Slicer = (start: number, end: number) => Promise<Blob | Uint8Array>;

async function uploadPresigned(
  client: YardmasterClient,
  request: { directory: string; name: string; size: bigint; contentType: string; sha256: string; requestId: string },
  size: number,
  slice: Slicer,
  meter: ProgressMeter,
  options: UploadFileOptions,
): Promise<StoredFile> {
  const put = options.put ?? fetchPut;
  const attempts = options.putAttempts ?? 3;
  const plan = await client.files.createUpload(request, { signal: options.signal });
  const fileId = plan.file!.id;
  // Every PUT stops when the caller aborts or another part failed.
  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const putWithRetries = async (url: string, body: Blob | Uint8Array, length: number, part: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await put({ url, body, size: length, signal: controller.signal, onProgress: (loaded) => meter.set(part, loaded) });
      } catch (error) {
        meter.set(part, 0);
        if (controller.signal.aborted || attempt >= attempts) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
  };
  try {
    if (plan.uploadUrl) {
      await putWithRetries(plan.uploadUrl, await slice(0, size), size, 1);
      meter.finish(1, size);
      return (await client.files.completeUpload({ fileId }, { signal: options.signal })).file!;
    }
    const partSize = Number(plan.partSize);
    const parallel = Math.max(1, options.parallelParts ?? 4);
    const etags: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    for (const part of plan.parts) {
      while (inFlight.size >= parallel && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined) break;
      const start = (part.partNumber - 1) * partSize;
      const end = Math.min(size, start + partSize);
      // Read only when a slot is free: at most `parallel` parts are held at once.
      const body = await slice(start, end);
      const sending: Promise<void> = putWithRetries(part.url, body, end - start, part.partNumber)
        .then(({ etag }) => {
          etags[part.partNumber - 1] = etag;
          meter.finish(part.partNumber, end - start);
        })
        .catch((error: unknown) => {
          failure ??= error;
          controller.abort(error);
        })
        .finally(() => inFlight.delete(sending));
      inFlight.add(sending);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    const parts = plan.parts.map((part) => ({ partNumber: part.partNumber, etag: etags[part.partNumber - 1]! }));
    return (await client.files.completeUpload({ fileId, parts }, { signal: options.signal })).file!;
  } catch (error) {
    controller.abort(error);
    await client.files.abortUpload({ fileId }).catch(() => undefined);
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function uploadThroughServer(
  client: YardmasterClient,
  metadata: { directory: string; name: string; size: bigint; contentType: string; sha256: string },
  size: number,
  slice: Slicer,
  meter: ProgressMeter,
  signal: AbortSignal | undefined,
): Promise<StoredFile> {
  async function* messages() {
    yield { content: { case: 'metadata' as const, value: metadata } };
    for (let start = 0; start < size; start += streamChunkBytes) {
      const end = Math.min(size, start + streamChunkBytes);
      const body = await slice(start, end);
      const chunk = body instanceof Uint8Array ? body : new Uint8Array(await body.arrayBuffer());
      yield { content: { case: 'chunk' as const, value: chunk } };
      meter.finish(start, end - start);
    }
  }
  const { file } = await client.files.upload(messages(), { signal });
  return file!;
}

/** Where downloaded bytes go: a WritableStream, or a function called with each chunk in order (awaited: back-pressure). */
export type DownloadSink = WritableStream<Uint8Array> | ((chunk: Uint8Array) => void | Promise<void>);

export interface DownloadFileOptions {
  /** The file's id. */
  id: string;
  sink: DownloadSink;
  /** `url` (default): a presigned GET straight from storage. `stream`: the Download stream through the server. */
  method?: 'url' | 'stream';
  /** Compare the SHA-256 of the bytes received with the file's; a mismatch throws DataLoss CHECKSUM_MISMATCH. */
  sha256?: boolean;
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
  /** The incremental hash used for `sha256` (Node.js passes node:crypto's). */
  hasher?: () => Hasher;
}

/**
 * Downloads a file's bytes into a sink, chunk by chunk (never the whole file in memory),
 * with progress, abort and an optional SHA-256 check. Returns the file's metadata.
 */
export async function downloadFile(client: YardmasterClient, options: DownloadFileOptions): Promise<StoredFile> {
  const { signal } = options;
  const hasher = options.sha256 ? (options.hasher ?? createSha256)() : undefined;
  const writer = typeof options.sink === 'function' ? undefined : options.sink.getWriter();
  const write = writer ? (chunk: Uint8Array) => writer.write(chunk) : (options.sink as (chunk: Uint8Array) => void | Promise<void>);
  let loaded = 0;
  let file: StoredFile | undefined;
  const take = async (chunk: Uint8Array) => {
    if (chunk.length === 0) return;
    hasher?.update(chunk);
    await write(chunk);
    loaded += chunk.length;
    options.onProgress?.({ loaded, total: Number(file?.size ?? 0) });
  };
  try {
    if (options.method === 'stream') {
      for await (const message of client.files.download({ id: options.id }, { signal })) {
        file ??= message.file;
        await take(message.chunk);
      }
    } else {
      file = (await client.files.getFile({ id: options.id }, { signal })).file!;
      const { url } = await client.files.getDownloadUrl({ id: options.id }, { signal });
      const response = await fetch(url, { signal });
      if (!response.ok || !response.body) throw storageError(response.status, await response.text());
      for await (const chunk of readableIterable(response.body)) await take(chunk);
    }
    if (!file) throw new YardmasterError(new ConnectError('the download carried no file', Code.Internal));
    if (loaded !== Number(file.size)) {
      throw new YardmasterError(new ConnectError(`received ${loaded} of ${file.size} bytes`, Code.DataLoss));
    }
    if (hasher) {
      const computed = hasher.digest();
      if (computed !== file.sha256) throw checksumMismatch(file.sha256, computed);
    }
    await writer?.close();
    return file;
  } catch (error) {
    await writer?.abort(error).catch(() => undefined);
    throw signal?.aborted ? YardmasterError.from(signal.reason, Code.Canceled) : YardmasterError.from(error);
  }
}
