import { createHash, timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { sendJson, type PlainRoute } from './http-handler.ts';

/** How long one rendering of the metrics text serves every scrape. */
const renderedForMs = 1000;

/**
 * The Prometheus metrics of one server instance, in a registry of its own (several
 * instances can share a process in tests). Served as text at /metrics.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly rpcCalls = new Counter({
    name: 'yardmaster_rpc_calls_total',
    help: 'RPC calls by procedure and result code',
    labelNames: ['procedure', 'code'] as const,
    registers: [this.registry],
  });
  readonly rpcDuration = new Histogram({
    name: 'yardmaster_rpc_duration_seconds',
    help: 'RPC duration by procedure (until the last message of a stream)',
    labelNames: ['procedure'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
    registers: [this.registry],
  });
  readonly openStreams = new Gauge({
    name: 'yardmaster_rpc_open_streams',
    help: 'Server streams open now, by procedure',
    labelNames: ['procedure'] as const,
    registers: [this.registry],
  });
  readonly authAttempts = new Counter({
    name: 'yardmaster_auth_attempts_total',
    help: 'Credential checks (login, registration, refresh, bearer credentials) by kind and outcome',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'yardmaster_' });
  }
}

/**
 * GET /metrics. With a token, only requests bearing it (`Authorization: Bearer <token>`)
 * get the text, compared in constant time. Rendering (default metrics read /proc and
 * the heap) is shared by all scrapes within a second, so a flood of requests costs one.
 */
export function metricsRoute(metrics: ServerMetrics, token: string | undefined): PlainRoute {
  const expected = token === undefined ? undefined : digest(`Bearer ${token}`);
  let rendered: { text: Promise<string>; at: number } | undefined;
  return async (req, res) => {
    if (expected && !timingSafeEqual(digest(req.headers.authorization ?? ''), expected)) {
      sendJson(
        res,
        401,
        { code: 'unauthenticated', message: 'metrics need Authorization: Bearer <METRICS_TOKEN>' },
        { 'www-authenticate': 'Bearer' },
      );
      return;
    }
    if (!rendered || performance.now() - rendered.at > renderedForMs) {
      rendered = { text: metrics.registry.metrics(), at: performance.now() };
      rendered.text.catch(() => (rendered = undefined));
    }
    const text = await rendered.text;
    res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
    res.end(text);
  };
}

/** A fixed-length digest, so that timingSafeEqual compares texts of any length. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
