import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Client, CopyDestinationOptions, CopySourceOptions } from 'minio';
import { type ObjectBody, ObjectReads } from './object-reads.ts';

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
  readonly #region: string;
  readonly #client: Client;
  readonly #presigner: Client;
  readonly #reads: ObjectReads;

  constructor(config: StorageConfig) {
    this.bucket = config.bucket;
    this.#region = config.region;
    this.#client = clientFor(config.endpoint, config.region, config);
    this.#reads = new ObjectReads(config);
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

  /**
   * The object's bytes from `offset`, `length` of them (all when undefined), read into
   * buffers the caller brings (see ObjectReads): for Download, which moves every byte of a
   * file through the server. Fails as `read` does (`isNotFoundError` for a missing object).
   */
  openBody(key: string, offset = 0, length?: number): Promise<ObjectBody> {
    return this.#reads.open(key, offset, length);
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
    let pending = new PartPieces(this.#client.enableSHA256);
    let total = 0;
    let partNumber = 0;
    // One part travels to storage while the next one fills: two parts in memory at most.
    let inFlight: Promise<void> | undefined;
    const sendPart = async (part: PartPieces) => {
      await inFlight;
      const number = ++partNumber;
      inFlight = this.#uploadPart(key, uploadId, number, part).then((etag) => {
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
        let piece = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        while (pending.bytes + piece.byteLength >= options.partBytes) {
          const take = options.partBytes - pending.bytes;
          pending.add(piece.subarray(0, take));
          piece = piece.subarray(take);
          await sendPart(pending);
          pending = new PartPieces(this.#client.enableSHA256);
        }
        if (piece.byteLength > 0) pending.add(piece);
      }
      options.signal?.throwIfAborted();
      if (total === 0) {
        await inFlight;
        await this.abortMultipart(key, uploadId);
        await this.#client.putObject(this.bucket, key, Buffer.alloc(0), 0);
        return 0;
      }
      if (pending.bytes > 0) await sendPart(pending);
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

  /**
   * One part of a multipart upload, sent as the pieces it was gathered from: minio's
   * `uploadPart` wants one buffer, which meant joining every part into a fresh 8 MiB copy
   * (a MiB of garbage per MiB uploaded). The payload's SHA-256, which the request's
   * signature covers over plain HTTP, was computed piece by piece as the part filled.
   */
  async #uploadPart(key: string, uploadId: string, partNumber: number, part: PartPieces): Promise<string> {
    const response = await this.#client.makeRequestStreamAsync(
      {
        method: 'PUT',
        bucketName: this.bucket,
        objectName: key,
        query: `uploadId=${uploadId}&partNumber=${partNumber}`,
        headers: { 'content-length': String(part.bytes) },
      },
      Readable.from(part.pieces, { objectMode: false }),
      part.sha256(),
      [200],
      this.#region,
    );
    response.resume();
    const etag = String(response.headers.etag ?? '').replace(/^"|"$/g, '');
    if (!etag) throw new Error(`storage answered part ${partNumber} without an ETag`);
    return etag;
  }
}

/** Whether a storage error says the object (or upload) does not exist. */
export function isNotFoundError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchObject' || code === 'NoSuchUpload';
}

/** A multipart part as it fills: the pieces (not joined) and, when the request needs it, their running SHA-256. */
class PartPieces {
  readonly pieces: Buffer[] = [];
  bytes = 0;
  readonly #hash: ReturnType<typeof createHash> | undefined;

  constructor(signsPayload: boolean) {
    this.#hash = signsPayload ? createHash('sha256') : undefined;
  }

  add(piece: Buffer): void {
    this.pieces.push(piece);
    this.bytes += piece.byteLength;
    this.#hash?.update(piece);
  }

  /** The hex SHA-256 a signed request declares; empty when the client sends UNSIGNED-PAYLOAD (HTTPS). */
  sha256(): string {
    return this.#hash?.digest('hex') ?? '';
  }
}
