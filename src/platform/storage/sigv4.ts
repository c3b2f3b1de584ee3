import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** The parts of an HTTP request that an AWS Signature Version 4 covers. */
export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent (`/bucket/key?a=1`). */
  url: string;
  /** Lower-case names, as Node gives them. */
  headers: Record<string, string | string[] | undefined>;
}

export type SignatureCheck =
  | { ok: true }
  | {
      ok: false;
      status: 400 | 403;
      code: 'AccessDenied' | 'SignatureDoesNotMatch' | 'InvalidAccessKeyId' | 'InvalidArgument';
      message: string;
      /** The `x-amz-*` headers that came without a signature (S3's `HeadersNotSigned`). */
      headersNotSigned?: string[];
    };

const algorithm = 'AWS4-HMAC-SHA256';
/** How far a signed request's clock may be from ours (S3 allows 15 minutes). */
const allowedSkewMs = 15 * 60_000;
/** The longest a presigned URL may live (Signature V4's limit). */
export const maxPresignSeconds = 7 * 24 * 3600;

/** The query parameters of a presigned request's own signature. */
const presignParameters = new Set([
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
]);
/** What a presigned GET may add: the overrides of the reply's headers (a download's name and type). */
const responseOverrides = new Set([
  'response-content-type',
  'response-content-disposition',
  'response-cache-control',
  'response-content-language',
  'response-content-encoding',
  'response-expires',
]);

/**
 * Checks an S3 request signed with Signature Version 4, in an Authorization header or
 * presigned in the query, against the secret of its access key, and refuses what a
 * signature does not vouch for. The canonical request is built from the path and query
 * as sent, as S3 does (signers sign what they send).
 *
 * A signature covers only the headers it names, so an `x-amz-*` header outside them is
 * refused (403, as AWS S3 does): those headers choose what S3 does (`x-amz-copy-source`
 * turns a PUT into a copy of another object, others set ACLs, tags, metadata), and the
 * holder of a presigned URL could otherwise add them. A query parameter named twice is
 * a 400: the signature would cover both copies while the store reads one. A presigned
 * request may moreover only do what the server presigns (see `checkPresignedOperation`).
 */
export function verifySigV4(request: SignedRequest, secretOf: (accessKey: string) => string | undefined, now = new Date()): SignatureCheck {
  const [rawPath = '/', rawQuery = ''] = splitOnce(request.url, '?');
  const query = rawQuery === '' ? [] : rawQuery.split('&');
  const names = query.map((element) => safeDecode(splitOnce(element, '=')[0]));
  const repeated = names.find((name, index) => names.indexOf(name) !== index);
  if (repeated !== undefined)
    return refused(
      400,
      'InvalidArgument',
      `The query parameter ${repeated === '' ? 'with an empty name' : repeated} appears more than once.`,
    );
  const queryValue = (name: string) => {
    const entry = query.find((element) => splitOnce(element, '=')[0] === name);
    return entry === undefined ? undefined : safeDecode(splitOnce(entry, '=')[1] ?? '');
  };
  const authorization = header(request.headers, 'authorization');
  const presigned = queryValue('X-Amz-Algorithm') !== undefined;
  if (!authorization && !presigned) return denied('AccessDenied', 'Anonymous access is not allowed: sign the request.');
  if (authorization && presigned) return denied('AccessDenied', 'Only one authentication mechanism is allowed.');

  let credential: string | undefined;
  let signedHeaders: string | undefined;
  let signature: string | undefined;
  let amzDate: string | undefined;
  let payloadHash: string;
  let canonicalQuery: string[];
  if (authorization) {
    if (!authorization.startsWith(`${algorithm} `)) return denied('AccessDenied', 'Only Signature Version 4 is supported.');
    const fields = new Map(
      authorization
        .slice(algorithm.length + 1)
        .split(',')
        .map((field) => splitOnce(field.trim(), '=') as [string, string]),
    );
    credential = fields.get('Credential');
    signedHeaders = fields.get('SignedHeaders');
    signature = fields.get('Signature');
    amzDate = header(request.headers, 'x-amz-date');
    payloadHash = header(request.headers, 'x-amz-content-sha256') ?? '';
    if (!payloadHash) return denied('AccessDenied', 'x-amz-content-sha256 is required.');
    canonicalQuery = query;
  } else {
    if (queryValue('X-Amz-Algorithm') !== algorithm) return denied('AccessDenied', 'Only Signature Version 4 is supported.');
    credential = queryValue('X-Amz-Credential');
    signedHeaders = queryValue('X-Amz-SignedHeaders');
    signature = queryValue('X-Amz-Signature');
    amzDate = queryValue('X-Amz-Date');
    const expires = Number(queryValue('X-Amz-Expires'));
    if (!Number.isInteger(expires) || expires < 1 || expires > maxPresignSeconds)
      return denied('AccessDenied', 'X-Amz-Expires must be from 1 second to 7 days.');
    const signedAt = parseAmzDate(amzDate);
    if (!signedAt) return denied('AccessDenied', 'X-Amz-Date is malformed.');
    if (now.getTime() > signedAt.getTime() + expires * 1000) return denied('AccessDenied', 'Request has expired.');
    payloadHash = 'UNSIGNED-PAYLOAD';
    canonicalQuery = query.filter((element) => splitOnce(element, '=')[0] !== 'X-Amz-Signature');
  }
  if (!credential || !signedHeaders || !signature || !amzDate) return denied('AccessDenied', 'The signature is incomplete.');

  const [accessKey, day, region, service, terminator] = credential.split('/');
  if (!accessKey || !day || !region || service !== 's3' || terminator !== 'aws4_request' || !amzDate.startsWith(day)) {
    return denied('AccessDenied', 'The credential scope is malformed.');
  }
  const secret = secretOf(accessKey);
  if (secret === undefined) return denied('InvalidAccessKeyId', 'The access key does not exist.');
  const signedAt = parseAmzDate(amzDate);
  if (!signedAt) return denied('AccessDenied', 'The request date is malformed.');
  if (authorization && Math.abs(now.getTime() - signedAt.getTime()) > allowedSkewMs) {
    return denied('AccessDenied', 'The difference between the request time and the current time is too large.');
  }
  const headerNames = signedHeaders.split(';');
  if (!headerNames.includes('host')) return denied('AccessDenied', 'The host header must be signed.');

  const canonicalRequest = [
    request.method.toUpperCase(),
    rawPath,
    canonicalQuery
      .map((element) => (element.includes('=') ? element : `${element}=`))
      .sort()
      .join('&'),
    `${headerNames.map((name) => `${name}:${(header(request.headers, name) ?? '').trim().replace(/ +/g, ' ')}`).join('\n')}\n`,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = [algorithm, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  let key: Buffer = hmac(`AWS4${secret}`, day);
  for (const part of [region, 's3', 'aws4_request']) key = hmac(key, part);
  const expected = hmac(key, stringToSign);
  const provided = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(0);
  if (provided.length !== expected.length || !timingSafeEqual(provided, expected)) {
    return denied('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  }
  const headersNotSigned = Object.keys(request.headers).filter(
    (name) => name.toLowerCase().startsWith('x-amz-') && !headerNames.includes(name.toLowerCase()),
  );
  if (headersNotSigned.length > 0) {
    return {
      ok: false,
      status: 403,
      code: 'AccessDenied',
      message: 'There were headers present in the request which were not signed',
      headersNotSigned: headersNotSigned.map((name) => name.toLowerCase()),
    };
  }
  return presigned ? checkPresignedOperation(request) : { ok: true };
}

/** The SHA-256 of an empty payload, as a bodiless request (a GET) declares it. */
export const emptyPayloadSha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Signs a bodiless request with Signature Version 4 in an Authorization header: the headers
 * to send, `headers` included (all of them signed, `host` among them). What minio signs its
 * own calls with, for the object reads that do not go through minio (see object-reads.ts).
 */
export function signSigV4(
  request: { method: string; path: string; headers: Record<string, string> },
  credentials: { accessKey: string; secretKey: string; region: string },
  now = new Date(),
): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = { ...request.headers, 'x-amz-date': amzDate, 'x-amz-content-sha256': emptyPayloadSha256 };
  const names = Object.keys(headers)
    .map((name) => name.toLowerCase())
    .sort();
  const lowered = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
  const signedHeaders = names.join(';');
  const [rawPath = '/', rawQuery = ''] = splitOnce(request.path, '?');
  const canonicalRequest = [
    request.method.toUpperCase(),
    rawPath,
    (rawQuery === '' ? [] : rawQuery.split('&'))
      .map((element) => (element.includes('=') ? element : `${element}=`))
      .sort()
      .join('&'),
    `${names.map((name) => `${name}:${lowered[name]!.trim().replace(/ +/g, ' ')}`).join('\n')}\n`,
    signedHeaders,
    emptyPayloadSha256,
  ].join('\n');
  const scope = `${day}/${credentials.region}/s3/aws4_request`;
  const stringToSign = [algorithm, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  let key: Buffer = hmac(`AWS4${credentials.secretKey}`, day);
  for (const part of [credentials.region, 's3', 'aws4_request']) key = hmac(key, part);
  const signature = hmac(key, stringToSign).toString('hex');
  headers.authorization = `${algorithm} Credential=${credentials.accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}

/**
 * What a presigned URL may do here: get (or head) an object, with the reply's headers
 * overridden; put an object; put one part of a multipart upload. That is all the server
 * presigns, so nothing else is allowed even with a valid signature: no ACL, tagging,
 * copy, listing, deletion, nor any other multipart step, and no `x-amz-*` header at
 * all, signed or not (what a presigned request does is all in its URL).
 */
export function checkPresignedOperation(request: SignedRequest): SignatureCheck {
  const [rawPath = '/', rawQuery = ''] = splitOnce(request.url, '?');
  const operation = new Set(
    (rawQuery === '' ? [] : rawQuery.split('&'))
      .map((element) => safeDecode(splitOnce(element, '=')[0]))
      .filter((name) => !presignParameters.has(name)),
  );
  const onObject = /^\/[^/]+\/./.test(rawPath);
  const method = request.method.toUpperCase();
  const allowed =
    onObject &&
    !Object.keys(request.headers).some((name) => name.toLowerCase().startsWith('x-amz-')) &&
    (((method === 'GET' || method === 'HEAD') && [...operation].every((name) => responseOverrides.has(name))) ||
      (method === 'PUT' && (operation.size === 0 || (operation.size === 2 && operation.has('partNumber') && operation.has('uploadId')))));
  return allowed
    ? { ok: true }
    : denied('AccessDenied', 'A presigned URL may only get an object, put an object or put one part of a multipart upload.');
}

function denied(code: 'AccessDenied' | 'SignatureDoesNotMatch' | 'InvalidAccessKeyId', message: string): SignatureCheck {
  return refused(403, code, message);
}

function refused(
  status: 400 | 403,
  code: 'AccessDenied' | 'SignatureDoesNotMatch' | 'InvalidAccessKeyId' | 'InvalidArgument',
  message: string,
): SignatureCheck {
  return { ok: false, status, code, message };
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

/** `20261123T001500Z` as a Date. */
function parseAmzDate(value: string | undefined): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value ?? '');
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  return new Date(Date.UTC(year!, month! - 1, day!, hour!, minute!, second!));
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256Hex(data: string): string {
  return createHash('sha256').update(data).digest('hex');
}
