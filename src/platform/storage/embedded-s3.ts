import { readdir, readFile, rm, stat, mkdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import S3rver from 's3rver';
import type { Logger } from '../logger.ts';
import { minPartBytes } from './object-storage.ts';
import { verifySigV4 } from './sigv4.ts';
import { persistedSecret } from '../persisted-secret.ts';

/** The only access key s3rver knows; its secret is ours (s3rver does not check V4 signatures). */
const embeddedAccessKey = 'S3RVER';

export interface S3Credentials {
  accessKey: string;
  secretKey: string;
}

/**
 * The secret of the embedded store under `dataDir`, kept there so that presigned URLs
 * outlive a restart and nobody else can sign requests.
 */
export function embeddedS3Secret(dataDir: string): Promise<string> {
  return persistedSecret(path.join(dataDir, 'embedded-s3-secret'));
}

/**
 * Browsers upload and download straight to storage with presigned URLs, from the console's
 * origin to this one, so the front answers CORS itself, for every bucket (s3rver would only
 * do it for buckets configured at start, and drops the headers from its error replies).
 *
 * Any origin may read the replies: every request the front passes on must carry a valid
 * Signature V4 (in its headers or in a presigned URL), and no cookie or other ambient
 * credential is involved (no Access-Control-Allow-Credentials), so an origin gains nothing
 * from CORS that it would not have with the URL alone: the signature is the permission.
 * Listing origins (the server's public URL, CORS_ORIGINS) would add configuration without
 * adding protection. Only what presigned URLs can do is offered: GET, PUT and HEAD, and the
 * ETag of each part is exposed so that a page can complete a multipart upload.
 */
const corsAllowedMethods = ['GET', 'PUT', 'HEAD'];
const corsMaxAgeSeconds = 3000;

/** The headers of every reply to a cross-origin request (one with an Origin header). */
function setCorsHeaders(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.headers.origin === undefined) return;
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', 'ETag');
}

/** Answers a CORS preflight as S3 does: 200 with what is allowed, or 403 CORSResponse. */
function answerPreflight(req: http.IncomingMessage, res: http.ServerResponse): void {
  const method = req.headers['access-control-request-method'];
  if (req.headers.origin === undefined) {
    sendError(res, 400, 'BadRequest', 'Insufficient information. Origin request header needed.');
  } else if (method === undefined) {
    sendError(res, 400, 'BadRequest', 'Invalid Access-Control-Request-Method: null');
  } else if (!corsAllowedMethods.includes(method)) {
    sendError(res, 403, 'CORSResponse', 'This CORS request is not allowed: only GET, PUT and HEAD are.');
  } else {
    res.setHeader('access-control-allow-methods', corsAllowedMethods.join(', '));
    const requestedHeaders = req.headers['access-control-request-headers'];
    // Any header may be sent: one the signature does not cover is refused by the signature check.
    if (requestedHeaders) res.setHeader('access-control-allow-headers', requestedHeaders);
    res.setHeader('access-control-max-age', String(corsMaxAgeSeconds));
    res.writeHead(200, { 'content-length': 0 }).end();
  }
}

const maxCompleteBodyBytes = 2 * 1024 * 1024;

export interface EmbeddedS3 {
  /** Base URL, e.g. http://127.0.0.1:40123 */
  endpoint: string;
  /** What requests must be signed with. */
  credentials: S3Credentials;
  stop(): Promise<void>;
}

/**
 * A local S3-compatible server keeping its objects under `directory`: the default when
 * S3_ENDPOINT is unset, and what the tests use. The storage code speaks plain S3 to it,
 * exactly as to MinIO.
 *
 * It is s3rver behind a thin front that does what s3rver does not: it checks every
 * request's Signature Version 4 (s3rver lets anonymous requests in and accepts any V4
 * signature), refuses `x-amz-*` headers the signature does not cover, duplicated query
 * parameters, and presigned URLs for anything but getting or putting an object or a
 * part (see sigv4.ts), and it makes three multipart operations behave as S3 does: completing an
 * upload with a part that was never sent crashes s3rver (an unhandled file error), it
 * accepts any ETag, and it implements neither aborting an upload nor listing its parts.
 * The front checks the parts against s3rver's own store, lists them from there, and
 * removes aborted uploads itself; every other signed request passes through unchanged.
 * It also answers CORS (see `setCorsHeaders`): preflights, which carry no signature,
 * never reach s3rver.
 */
export async function startEmbeddedS3(options: {
  directory: string;
  host: string;
  bucket: string;
  secretKey: string;
  logger: Logger;
}): Promise<EmbeddedS3> {
  await mkdir(options.directory, { recursive: true });
  const store = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: options.directory,
    silent: true,
    configureBuckets: [{ name: options.bucket, configs: [] }],
  });
  const { port: storePort } = await store.run();
  const uploadsOf = (bucket: string) => path.join(options.directory, bucket, '._S3rver_uploads');

  const credentials = { accessKey: embeddedAccessKey, secretKey: options.secretKey };
  const secretOf = (accessKey: string) => (accessKey === credentials.accessKey ? credentials.secretKey : undefined);

  let serialized = Promise.resolve();
  const front = http.createServer((req, res) => {
    setCorsHeaders(req, res);
    if (req.method === 'OPTIONS') {
      req.resume();
      return answerPreflight(req, res);
    }
    const check = verifySigV4({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers }, secretOf);
    if (!check.ok) {
      req.resume();
      return sendError(res, check.status, check.code, check.message, check.headersNotSigned);
    }
    const url = new URL(req.url ?? '/', 'http://front');
    const bucket = decodeURIComponent(url.pathname.split('/')[1] ?? '');
    const uploadId = url.searchParams.get('uploadId');
    const validUploadId = uploadId !== null && /^[A-Za-z0-9_-]{1,200}$/.test(uploadId);
    if (req.method === 'GET' && uploadId !== null && !url.searchParams.has('partNumber')) {
      req.resume();
      void listParts(res, validUploadId ? path.join(uploadsOf(bucket), uploadId) : undefined, uploadId);
    } else if (req.method === 'POST' && uploadId !== null) {
      void completeUpload(req, res, validUploadId ? path.join(uploadsOf(bucket), uploadId) : undefined, storePort);
    } else if (req.method === 'DELETE' && uploadId !== null) {
      req.resume();
      void abortUpload(res, validUploadId ? path.join(uploadsOf(bucket), uploadId) : undefined);
    } else if (req.headers['x-amz-copy-source'] !== undefined || req.method === 'DELETE') {
      // s3rver fails (500) when a copy overlaps another copy or a delete of the same
      // objects; these calls are short, so they simply take turns.
      serialized = serialized.then(
        () =>
          new Promise<void>((done) => {
            res.once('close', done);
            forward(req, res, storePort, undefined);
          }),
      );
    } else {
      forward(req, res, storePort, undefined);
    }
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(0, options.host, () => resolve());
  });
  const { port } = front.address() as AddressInfo;
  const host = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  const endpoint = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  options.logger.info({ endpoint, directory: options.directory }, 'embedded S3 storage started');
  return {
    endpoint,
    credentials,
    async stop() {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await store.close();
    },
  };
}

/** Passes the request to s3rver as is (the Host header too: presigned signatures cover it). */
function forward(req: http.IncomingMessage, res: http.ServerResponse, storePort: number, body: Buffer | undefined): void {
  const upstream = http.request(
    { host: '127.0.0.1', port: storePort, method: req.method, path: req.url, headers: req.headers },
    (reply) => {
      // The front's CORS headers (set on `res`) are the only ones.
      const headers = Object.fromEntries(Object.entries(reply.headers).filter(([name]) => !name.startsWith('access-control-')));
      res.writeHead(reply.statusCode ?? 502, headers);
      // A client that goes away mid-reply must not leave the upstream reply hanging.
      pipeline(reply, res).catch(() => upstream.destroy());
    },
  );
  upstream.on('error', () => res.destroy());
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  if (body) upstream.end(body);
  else pipeline(req, upstream).catch(() => upstream.destroy());
}

async function completeUpload(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  uploadDir: string | undefined,
  storePort: number,
): Promise<void> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > maxCompleteBodyBytes) return sendError(res, 400, 'MaxMessageLengthExceeded', 'The request body is too large.');
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  if (!uploadDir || !(await exists(uploadDir))) return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  const parts = [...body.toString('utf8').matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((match) => ({
    number: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(match[1]!)?.[1]),
    etag: (/<ETag>([^<]*)<\/ETag>/.exec(match[1]!)?.[1] ?? '').replace(/&quot;|"/g, '').trim(),
  }));
  if (parts.length === 0) return sendError(res, 400, 'MalformedXML', 'The XML you provided was not well-formed.');
  for (const [index, part] of parts.entries()) {
    if (!Number.isInteger(part.number) || part.number < 1 || (index > 0 && part.number <= parts[index - 1]!.number)) {
      return sendError(res, 400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
    }
    const partPath = path.join(uploadDir, String(part.number));
    const md5 = await readFile(`${partPath}.md5`, 'utf8').catch(() => undefined);
    if (md5 === undefined || md5.trim() !== part.etag) {
      return sendError(res, 400, 'InvalidPart', 'One or more of the specified parts could not be found or its entity tag did not match.');
    }
    if (index < parts.length - 1 && (await stat(partPath)).size < minPartBytes) {
      return sendError(res, 400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
    }
  }
  forward(req, res, storePort, body);
}

/** S3's ListParts from s3rver's store on disk (s3rver does not implement it): every part, with its size. */
async function listParts(res: http.ServerResponse, uploadDir: string | undefined, uploadId: string): Promise<void> {
  if (!uploadDir || !(await exists(uploadDir))) return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  const numbers = (await readdir(uploadDir))
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .sort((a, b) => a - b);
  const parts: string[] = [];
  for (const number of numbers) {
    const partPath = path.join(uploadDir, String(number));
    const [info, md5] = await Promise.all([stat(partPath), readFile(`${partPath}.md5`, 'utf8').catch(() => '')]);
    parts.push(
      `<Part><PartNumber>${number}</PartNumber><LastModified>${info.mtime.toISOString()}</LastModified><ETag>"${md5.trim()}"</ETag><Size>${info.size}</Size></Part>`,
    );
  }
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult><UploadId>${uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts.join('')}</ListPartsResult>`;
  res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
}

async function abortUpload(res: http.ServerResponse, uploadDir: string | undefined): Promise<void> {
  if (!uploadDir || !(await exists(uploadDir))) return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  await rm(uploadDir, { recursive: true, force: true });
  res.writeHead(204).end();
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string, headersNotSigned?: string[]): void {
  // Header names may hold `&` (a token character): escaped like any text.
  const unsigned = headersNotSigned ? `<HeadersNotSigned>${headersNotSigned.join(', ').replace(/&/g, '&amp;')}</HeadersNotSigned>` : '';
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>${unsigned}</Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
