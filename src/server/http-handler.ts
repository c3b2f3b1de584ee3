import type { connectNodeAdapter } from '@connectrpc/connect-node';
import { randomUUID } from 'node:crypto';
import { applyCors } from './cors.ts';

/** The request and response types of Node's http and http2 servers, as Connect's adapter takes them. */
export type HttpHandler = ReturnType<typeof connectNodeAdapter>;
export type HttpRequest = Parameters<HttpHandler>[0];
export type HttpResponse = Parameters<HttpHandler>[1];
export type PlainRoute = (req: HttpRequest, res: HttpResponse) => void | Promise<void>;

const requestIdPattern = /^[\w.:-]{1,128}$/;

/**
 * The one request handler behind every listener: gives each request an id (the
 * client's `x-request-id` when it is sane), applies CORS, serves the plain HTTP routes
 * (health, JWKS, metrics) and hands everything else to the RPC handler.
 */
export function createHttpHandler(options: {
  rpc: HttpHandler;
  routes: Record<string, PlainRoute>;
  corsOrigins: readonly string[];
  /** Paths of methods whose request is a stream (uploads): exempt from the body deadline. */
  streamingRequestPaths: ReadonlySet<string>;
  /**
   * How long a request with one message may take to arrive. The message is read whole
   * before anyone knows who sent it, so a client that starts a large body and then
   * stalls would otherwise hold its memory for as long as it likes.
   */
  requestBodyDeadlineMs: number;
}): HttpHandler {
  return (req, res) => {
    const incoming = req.headers['x-request-id'];
    // An id of our own only needs to be unique: a random UUID from Node's batched entropy,
    // not a time-ordered one (uuid's v7 asks the system for randomness on every call).
    const requestId = typeof incoming === 'string' && requestIdPattern.test(incoming) ? incoming : randomUUID();
    req.headers['x-request-id'] = requestId;
    res.setHeader('x-request-id', requestId);
    if (applyCors(req, res, options.corsOrigins)) return;
    const path = (req.url ?? '/').split('?')[0]!;
    const route = options.routes[path];
    if (route && (req.method === 'GET' || req.method === 'HEAD')) {
      Promise.resolve(route(req, res)).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
      return;
    }
    if (!options.streamingRequestPaths.has(path)) limitBodyTime(req, res, options.requestBodyDeadlineMs);
    options.rpc(req, res);
  };
}

function limitBodyTime(req: HttpRequest, res: HttpResponse, requestBodyDeadlineMs: number): void {
  if (req.complete) return;
  const timer = setTimeout(() => {
    if (!req.complete) {
      req.destroy();
      res.destroy();
    }
  }, requestBodyDeadlineMs);
  timer.unref();
  // One listener, not also one for the body's end: the timer checks that itself, and the
  // response closes a moment later (a call's timer is one object in Node's shared list of
  // timers of this duration, which is the one shared sweep there needs to be; a sweep of our
  // own would hold every call's request and response until it passed).
  const clear = () => clearTimeout(timer);
  res.once('close', clear);
  // Also once the body is read: a stream taken out of Connect's pipeline (StreamHandoff)
  // lives on without its compat response, and a pending timer would keep it (and the
  // request) until it fired.
  if ('stream' in req) req.once('end', clear);
}

export function sendJson(res: HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(text);
}
