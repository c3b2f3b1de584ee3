import type { ClientHttp2Stream, Http2Session } from 'node:http2';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from '@connectrpc/connect-node';
import type { Interceptor } from '@connectrpc/connect';
import { createHash } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { File as StoredFile } from '../../../gen/yardmaster/v1/files_pb.ts';
import { createClientOnTransport, type CredentialOptions, type YardmasterClient } from './client.ts';
import type { Hasher } from './sha256.ts';
import {
  downloadFile as downloadFileTo,
  storageError,
  uploadFile as uploadFrom,
  type PutFunction,
  type DownloadFileOptions,
  type UploadFileOptions,
  type UploadSource,
} from './transfers.ts';

export * from './common.ts';
export { fileTokenStorage } from './file-token-storage.ts';

export interface NodeClientOptions extends CredentialOptions {
  /** Server address, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  /** Wire protocol: Connect (JSON by default), gRPC (always HTTP/2) or gRPC-Web. */
  protocol?: 'connect' | 'grpc' | 'grpc-web';
  /** HTTP version for Connect and gRPC-Web; gRPC always uses HTTP/2. Default "1.1". */
  httpVersion?: '1.1' | '2';
  /** Protobuf binary instead of JSON. Default: JSON for Connect, binary for gRPC and gRPC-Web (their standard forms). */
  binary?: boolean;
  /** The User-Agent of every call, e.g. `my-tool/1.2.0`: the server shows it in the account's session list. Default connect-es's. */
  userAgent?: string;
}

/** A typed Yardmaster client for Node.js: every service, with credentials and token refresh. */
export function createYardmasterClient(options: NodeClientOptions): YardmasterClient {
  const protocol = options.protocol ?? 'connect';
  const httpVersion = protocol === 'grpc' ? '2' : (options.httpVersion ?? '1.1');
  // One HTTP/2 session shared by both transports, closed by close(). It closes itself after
  // 30 s without calls, before the server's keep-alive timeout (65 s by default) sends
  // GOAWAY: connect-node can crash on a GOAWAY of an idle connection (connectrpc/connect-es#1768).
  const sessionManager =
    httpVersion === '2' ? new WideWindowSessionManager(options.baseUrl, { idleConnectionTimeoutMs: 30_000 }) : undefined;
  const userAgent = options.userAgent;
  const naming: Interceptor[] = userAgent
    ? [
        (next) => (request) => {
          request.header.set('user-agent', userAgent);
          return next(request);
        },
      ]
    : [];
  const makeTransport = (interceptors: Interceptor[]) => {
    const common = {
      baseUrl: options.baseUrl,
      interceptors: [...naming, ...interceptors],
      useBinaryFormat: options.binary ?? protocol !== 'connect',
    };
    if (protocol === 'grpc') return createGrpcTransport({ ...common, sessionManager });
    if (sessionManager) {
      const http2 = { ...common, httpVersion: '2' as const, sessionManager };
      return protocol === 'grpc-web' ? createGrpcWebTransport(http2) : createConnectTransport(http2);
    }
    const http1 = { ...common, httpVersion: '1.1' as const };
    return protocol === 'grpc-web' ? createGrpcWebTransport(http1) : createConnectTransport(http1);
  };
  return createClientOnTransport(
    (interceptors) => makeTransport(interceptors),
    options,
    () => sessionManager?.abort(),
  );
}

/** SHA-256 from node:crypto (native speed). */
export function nodeSha256(): Hasher {
  const hash = createHash('sha256');
  return {
    update: (bytes) => void hash.update(bytes),
    digest: () => hash.digest('hex'),
  };
}

export interface NodeUploadFileOptions extends Omit<UploadFileOptions, 'data'> {
  /** The bytes, as in browsers; or use `path`. */
  data?: UploadSource;
  /** A file on disk, read slice by slice (`fs.openAsBlob`); the name defaults to its base name. */
  path?: string;
}

/**
 * PUT with node:http(s), streaming the body and reporting progress as the bytes are
 * written (fetch reports a body only once it is sent, so a single-PUT upload would show
 * nothing until it ends). The Content-Length is always sent: S3 refuses chunked PUTs.
 */
export const nodePut: PutFunction = async ({ url, body, size, signal, onProgress }) => {
  const target = new URL(url);
  const request = (target.protocol === 'https:' ? https : http).request(target, {
    method: 'PUT',
    headers: { 'content-length': String(size) },
    signal,
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.once('response', resolve);
    request.once('error', reject);
  });
  let sent = 0;
  const source = body instanceof Uint8Array ? Readable.from([body]) : Readable.fromWeb(body.stream() as WebReadableStream);
  source.on('data', (chunk: Uint8Array) => {
    sent += chunk.length;
    onProgress(sent);
  });
  const [response] = await Promise.all([answered, pipeline(source, request)]);
  let reply = '';
  for await (const chunk of response) reply += String(chunk);
  const status = response.statusCode ?? 0;
  if (status < 200 || status >= 300) throw storageError(status, reply);
  return { etag: String(response.headers.etag ?? '') };
};

/**
 * Uploads a file (see the browser variant): from `data` or a file on disk (`path`), hashing
 * with node:crypto and sending presigned parts with `nodePut` (progress as the bytes go)
 * unless `put` says otherwise. Returns the file, AVAILABLE.
 */
export async function uploadFile(client: YardmasterClient, options: NodeUploadFileOptions): Promise<StoredFile> {
  const data = options.path !== undefined ? await openAsBlob(options.path) : options.data;
  if (data === undefined) throw new TypeError('uploadFile needs `data` or `path`');
  const name = options.name ?? (options.path !== undefined ? path.basename(options.path) : undefined);
  return uploadFrom(client, { hasher: nodeSha256, put: nodePut, ...options, name, data });
}

export interface NodeDownloadFileOptions extends Omit<DownloadFileOptions, 'sink'> {
  sink?: DownloadFileOptions['sink'];
  /** Write to this file (created or truncated, mode 0644); removed again when the download fails. */
  path?: string;
}

/** Downloads a file into a sink or a file on disk (`path`), hashing with node:crypto. Returns the file's metadata. */
export async function downloadFile(client: YardmasterClient, options: NodeDownloadFileOptions): Promise<StoredFile> {
  if (options.path === undefined) {
    if (!options.sink) throw new TypeError('downloadFile needs `sink` or `path`');
    return downloadFileTo(client, { hasher: nodeSha256, ...options, sink: options.sink });
  }
  const handle = await open(options.path, 'w');
  try {
    const file = await downloadFileTo(client, {
      hasher: nodeSha256,
      ...options,
      sink: async (chunk) => {
        await handle.write(chunk);
      },
    });
    await handle.close();
    return file;
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(options.path, { force: true });
    throw error;
  }
}

/** Receive window of each HTTP/2 stream and of the whole connection. */
const receiveWindowBytes = 4 * 1024 * 1024;

/**
 * HTTP/2 sessions whose receive windows are raised from the protocol's 64 KiB, which would
 * cap a download at one window per round trip. The SETTINGS frame raises each stream's;
 * the connection's own window can only be raised on the open session, which connect-node
 * keeps to itself: the first stream of each session hands it over.
 */
class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<Http2Session>();

  constructor(url: string, pingOptions: ConstructorParameters<typeof Http2SessionManager>[1]) {
    super(url, pingOptions, { settings: { initialWindowSize: receiveWindowBytes } });
  }

  override async request(...args: Parameters<Http2SessionManager['request']>): Promise<ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !session.destroyed && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(receiveWindowBytes);
    }
    return stream;
  }
}
