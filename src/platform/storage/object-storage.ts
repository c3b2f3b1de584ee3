import type { Readable } from 'node:stream';
import { Client, CopyDestinationOptions, CopySourceOptions } from 'minio';

export interface StorageConfig {
  /** http(s)://host:port of the S3 API, as the server reaches it. */
  endpoint: string;
  /** http(s)://host:port that clients use for presigned URLs (default: `endpoint`). */
  publicEndpoint: string;
  accessKey: string;
  secretKey: string;
  /** The credential presigned URLs are signed with (default: accessKey/secretKey). */
  presign?: { accessKey: string; secretKey: string };
  bucket: string;
  region: string;
}

export interface UploadedPart {
  partNumber: number;
  etag: string;
}

/** S3's smallest part (all but the last). */
export const minPartBytes = 5 * 1024 * 1024;

function clientFor(endpoint: string, region: string, credentials: { accessKey: string; secretKey: string }): Client {
  const url = new URL(endpoint);
  const useSSL = url.protocol === 'https:';
  return new Client({
    endPoint: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey: credentials.accessKey,
    secretKey: credentials.secretKey,
    // Known up front, so presigning never has to ask the endpoint for it.
    region,
    pathStyle: true,
  });
}

/**
 * The one place that talks to object storage, through the `minio` client and plain S3
 * calls only, so MinIO in production and the embedded server in development and tests
 * take the same path. Object keys are chosen by the server, never by clients.
 */
export class ObjectStorage {
  readonly bucket: string;
  readonly #client: Client;
  readonly #presigner: Client;

  constructor(config: StorageConfig) {
    this.bucket = config.bucket;
    this.#client = clientFor(config.endpoint, config.region, config);
    // Presigned URLs are handed to clients, who can replay them with headers of their
    // own; signed with a credential that may only put and get objects, they cannot be
    // turned into anything else even where storage ignores unsigned headers.
    this.#presigner =
      config.publicEndpoint === config.endpoint && !config.presign
        ? this.#client
        : clientFor(config.publicEndpoint, config.region, config.presign ?? config);
  }

  async ensureBucket(region: string): Promise<void> {
    if (!(await this.#client.bucketExists(this.bucket))) await this.#client.makeBucket(this.bucket, region);
  }

  /** Resolves when the bucket answers; for readiness checks. */
  async check(): Promise<void> {
    if (!(await this.#client.bucketExists(this.bucket))) throw new Error('the bucket is missing');
  }

  presignPut(key: string, expirySeconds: number): Promise<string> {
    return this.#presigner.presignedPutObject(this.bucket, key, expirySeconds);
  }

  /** A GET URL that downloads the object as an attachment named `fileName`. */
  presignGet(key: string, expirySeconds: number, fileName: string, contentType: string): Promise<string> {
    const asciiName = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
    return this.#presigner.presignedGetObject(this.bucket, key, expirySeconds, {
      'response-content-disposition': `attachment; filename="${asciiName}"; filename*=UTF-8''${encodeURIComponent(fileName)}`,
      'response-content-type': contentType,
    });
  }

  startMultipart(key: string): Promise<string> {
    return this.#client.initiateNewMultipartUpload(this.bucket, key, {});
  }

  presignPart(key: string, uploadId: string, partNumber: number, expirySeconds: number): Promise<string> {
    return this.#presigner.presignedUrl('PUT', this.bucket, key, expirySeconds, { partNumber: String(partNumber), uploadId });
  }

  async completeMultipart(key: string, uploadId: string, parts: UploadedPart[]): Promise<void> {
    await this.#client.completeMultipartUpload(
      this.bucket,
      key,
      uploadId,
      parts.map((part) => ({ part: part.partNumber, etag: part.etag })),
    );
  }

  /** The parts storage holds so far for a multipart upload: number and size. */
  async listParts(key: string, uploadId: string): Promise<{ partNumber: number; size: number }[]> {
    // A plain S3 ListParts; minio-js marks the method protected but it is an ordinary call.
    const client = this.#client as unknown as {
      listParts(bucket: string, key: string, uploadId: string): Promise<{ part: number; size: number }[]>;
    };
    return (await client.listParts(this.bucket, key, uploadId)).map((part) => ({ partNumber: part.part, size: part.size }));
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    await this.#client.abortMultipartUpload(this.bucket, key, uploadId);
  }

  /** The object's size, or undefined when there is no such object. */
  async size(key: string): Promise<number | undefined> {
    try {
      return (await this.#client.statObject(this.bucket, key)).size;
    } catch (error) {
      if (isNotFoundError(error)) return undefined;
      throw error;
    }
  }

  /** A stream of the object's bytes from `offset`, `length` of them (all when undefined). */
  read(key: string, offset = 0, length?: number): Promise<Readable> {
    return offset === 0 && length === undefined
      ? this.#client.getObject(this.bucket, key)
      : this.#client.getPartialObject(this.bucket, key, offset, length);
  }

  async remove(key: string): Promise<void> {
    await this.#client.removeObject(this.bucket, key);
  }

  /** Copies an object inside the bucket, on the storage side (no bytes through here). */
  async copy(sourceKey: string, targetKey: string): Promise<void> {
    await this.#client.copyObject(
      new CopySourceOptions({ Bucket: this.bucket, Object: sourceKey }),
      new CopyDestinationOptions({ Bucket: this.bucket, Object: targetKey }),
    );
  }

  /** The objects under `prefix` (key and size), a page of storage's listing at a time. */
  async *listObjects(prefix: string): AsyncGenerator<{ key: string; size: number }[]> {
    let page: { key: string; size: number }[] = [];
    for await (const item of this.#client.listObjectsV2(this.bucket, prefix, true) as AsyncIterable<{ name?: string; size?: number }>) {
      if (item.name) page.push({ key: item.name, size: item.size ?? 0 });
      if (page.length === 1000) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  /**
   * Uploads a stream of unknown chunking as a multipart upload, a part or two in memory
   * at a time (constant memory whatever the size). `onChunk` sees every chunk first and may
   * throw to stop; on any error or abort the multipart upload is aborted, so nothing is
   * left in storage.
   */
  async uploadStream(
    key: string,
    source: AsyncIterable<Uint8Array>,
    options: { partBytes: number; signal?: AbortSignal; onChunk?: (chunk: Uint8Array) => void | Promise<void> },
  ): Promise<number> {
    const uploadId = await this.startMultipart(key);
    const parts: UploadedPart[] = [];
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let total = 0;
    let partNumber = 0;
    // One part travels to storage while the next one fills: two parts in memory at most.
    let inFlight: Promise<void> | undefined;
    const sendPart = async (payload: Buffer) => {
      await inFlight;
      const number = ++partNumber;
      inFlight = this.#client
        .uploadPart({ bucketName: this.bucket, objectName: key, uploadID: uploadId, partNumber: number, headers: {} }, payload)
        .then(({ etag }) => {
          parts.push({ partNumber: number, etag });
        });
      // Keep the rejection observed until it is awaited (next part or the end).
      inFlight.catch(() => {});
    };
    try {
      for await (const chunk of source) {
        options.signal?.throwIfAborted();
        await options.onChunk?.(chunk);
        total += chunk.byteLength;
        pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        pendingBytes += chunk.byteLength;
        while (pendingBytes >= options.partBytes) {
          const joined = Buffer.concat(pending, pendingBytes);
          await sendPart(joined.subarray(0, options.partBytes));
          const rest = joined.subarray(options.partBytes);
          pending = rest.byteLength > 0 ? [Buffer.from(rest)] : [];
          pendingBytes = rest.byteLength;
        }
      }
      options.signal?.throwIfAborted();
      if (total === 0) {
        await inFlight;
        await this.abortMultipart(key, uploadId);
        await this.#client.putObject(this.bucket, key, Buffer.alloc(0), 0);
        return 0;
      }
      if (pendingBytes > 0) await sendPart(Buffer.concat(pending, pendingBytes));
      await inFlight;
      await this.completeMultipart(
        key,
        uploadId,
        parts.toSorted((a, b) => a.partNumber - b.partNumber),
      );
      return total;
    } catch (error) {
      await inFlight?.catch(() => {});
      await this.abortMultipart(key, uploadId).catch(() => {});
      throw error;
    }
  }
}

/** Whether a storage error says the object (or upload) does not exist. */
export function isNotFoundError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchObject' || code === 'NoSuchUpload';
}
