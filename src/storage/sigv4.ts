import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** The parts of an HTTP request that an AWS Signature Version 4 covers. */
export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent (`/bucket/key?a=1`). */
  url: string;
  /** Lower-case names, as Node gives them. */
  headers: Record<string, string | string[] | undefined>;
}

export type SignatureCheck = { ok: true } | { ok: false; code: 'AccessDenied' | 'SignatureDoesNotMatch' | 'InvalidAccessKeyId'; message: string };

const algorithm = 'AWS4-HMAC-SHA256';
/** How far a signed request's clock may be from ours (S3 allows 15 minutes). */
const allowedSkewMs = 15 * 60_000;
const maxPresignSeconds = 7 * 24 * 3600;

/**
 * Checks an S3 request signed with Signature Version 4, in an Authorization header or
 * presigned in the query, against the secret of its access key. The canonical request
 * is built from the path and query as sent, as S3 does (signers sign what they send).
 */
export function verifySigV4(request: SignedRequest, secretOf: (accessKey: string) => string | undefined, now = new Date()): SignatureCheck {
  const [rawPath = '/', rawQuery = ''] = splitOnce(request.url, '?');
  const query = rawQuery === '' ? [] : rawQuery.split('&');
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
    if (!Number.isInteger(expires) || expires < 1 || expires > maxPresignSeconds) return denied('AccessDenied', 'X-Amz-Expires must be from 1 second to 7 days.');
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
  return { ok: true };
}

function denied(code: 'AccessDenied' | 'SignatureDoesNotMatch' | 'InvalidAccessKeyId', message: string): SignatureCheck {
  return { ok: false, code, message };
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
