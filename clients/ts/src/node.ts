import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { createHash } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import type { File as StoredFile } from '../../../gen/yardmaster/v1/files_pb.ts';
import { createClientOnTransport, type CredentialOptions, type YardmasterClient } from './client.ts';
import type { Hasher } from './sha256.ts';
import {
  downloadFile as downloadFileTo,
  uploadFile as uploadFrom,
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
}

/** A typed Yardmaster client for Node.js: every service, with credentials and token refresh. */
export function createYardmasterClient(options: NodeClientOptions): YardmasterClient {
  const protocol = options.protocol ?? 'connect';
  const httpVersion = protocol === 'grpc' ? '2' : (options.httpVersion ?? '1.1');
  // One HTTP/2 session shared by both transports, closed by close(). Its receive window is
  // raised from the protocol's 64 KiB, which would cap downloads at one window per round trip.
  // It closes itself after 30 s without calls, before the server's keep-alive timeout (65 s
  // by default) sends GOAWAY: connect-node can crash on a GOAWAY of an idle connection
  // (connectrpc/connect-es#1768).
  const sessionManager =
    httpVersion === '2'
      ? new Http2SessionManager(options.baseUrl, { idleConnectionTimeoutMs: 30_000 }, { settings: { initialWindowSize: 4 * 1024 * 1024 } })
      : undefined;
  const makeTransport = (interceptors: Parameters<typeof createConnectTransport>[0]['interceptors']) => {
    const common = { baseUrl: options.baseUrl, interceptors, useBinaryFormat: options.binary ?? protocol !== 'connect' };
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
 * Uploads a file (see the browser variant): from `data` or a file on disk (`path`), hashing
 * with node:crypto. Returns the file, AVAILABLE.
 */
export async function uploadFile(client: YardmasterClient, options: NodeUploadFileOptions): Promise<StoredFile> {
  const data = options.path !== undefined ? await openAsBlob(options.path) : options.data;
  if (data === undefined) throw new TypeError('uploadFile needs `data` or `path`');
  const name = options.name ?? (options.path !== undefined ? path.basename(options.path) : undefined);
  return uploadFrom(client, { hasher: nodeSha256, ...options, name, data });
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
