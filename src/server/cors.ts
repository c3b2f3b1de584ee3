import { cors as connectCors } from '@connectrpc/connect';
import type { HttpRequest, HttpResponse } from './http-handler.ts';

const allowedHeaders = [...connectCors.allowedHeaders, 'Authorization', 'X-Request-Id'].join(', ');
const exposedHeaders = [...connectCors.exposedHeaders, 'X-Request-Id', 'Retry-After'].join(', ');
const allowedMethods = [...connectCors.allowedMethods, 'OPTIONS'].join(', ');

/**
 * CORS for the browser origins in CORS_ORIGINS, with the request and response headers
 * Connect-Web and gRPC-Web need. Returns true when it answered a preflight itself.
 */
export function applyCors(req: HttpRequest, res: HttpResponse, allowedOrigins: readonly string[]): boolean {
  const origin = req.headers.origin;
  const isPreflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
  if (origin === undefined || allowedOrigins.length === 0) {
    if (isPreflight) {
      res.writeHead(204);
      res.end();
    }
    return isPreflight;
  }
  res.setHeader('Vary', 'Origin');
  const allowed = allowedOrigins.includes('*') || allowedOrigins.includes(origin);
  if (allowed) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Expose-Headers', exposedHeaders);
  }
  if (!isPreflight) return false;
  if (allowed) {
    res.setHeader('Access-Control-Allow-Methods', allowedMethods);
    res.setHeader('Access-Control-Allow-Headers', allowedHeaders);
    res.setHeader('Access-Control-Max-Age', '7200');
  }
  res.writeHead(204);
  res.end();
  return true;
}
