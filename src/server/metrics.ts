import { createHash, timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { sendJson, type PlainRoute } from './http-handler.ts';

/** How long one rendering of the metrics text serves every scrape. */
const renderedForMs = 1000;

/** The jobs of one queue that are not finished yet. */
export interface QueueFigures {
  queue: string;
  queued: number;
  running: number;
  /** Queued jobs that are due now (no run_after, or one that has passed). */
  due: number;
}

/**
 * Where the system-wide figures come from (app.ts connects the areas that own them). Read
 * from the database when /metrics renders, so every instance reports the same figures.
 */
export interface SystemFigures {
  /** Every queue, those without unfinished jobs included (as zeros). */
  queues(): Promise<QueueFigures[]>;
  /** Instances whose heartbeat is recent enough not to count as lost. */
  liveInstances(): Promise<number>;
  /** External workers heard from recently (or waiting in a long poll). */
  liveExternalWorkers(): Promise<number>;
}

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
  readonly #leasesExpired = new Counter({
    name: 'yardmaster_job_leases_expired_total',
    help: 'Leases of external workers that lapsed (the worker stopped heartbeating) and were ended by this instance',
    registers: [this.registry],
  });

  #figures: SystemFigures | undefined;
  #queueFigures: Promise<QueueFigures[] | undefined> | undefined;
  readonly #jobs = new Gauge({
    name: 'yardmaster_jobs',
    help: 'Unfinished jobs by queue and status (queued, running); finished ones are history, see ListJobs',
    labelNames: ['queue', 'status'] as const,
    registers: [this.registry],
    collect: () => this.#collectQueues(),
  });
  readonly #queueDepth = new Gauge({
    name: 'yardmaster_queue_depth',
    help: 'Queued jobs due now (run_after passed or unset) by queue, paused queues included',
    labelNames: ['queue'] as const,
    registers: [this.registry],
    collect: () => this.#collectQueues(),
  });
  readonly #instancesLive = new Gauge({
    name: 'yardmaster_instances_live',
    help: 'Server instances (api, worker or both) whose heartbeat is recent, this one included',
    registers: [this.registry],
    collect: async () => {
      const live = await this.#figures?.liveInstances().catch(() => undefined);
      // No figure (database unreachable) is an absent series, not a misleading zero.
      if (live === undefined) this.#instancesLive.remove();
      else this.#instancesLive.set(live);
    },
  });
  readonly #externalWorkersLive = new Gauge({
    name: 'yardmaster_external_workers_live',
    help: 'External workers (WorkerService) heard from in the last 30 s or waiting in ClaimJobs, stopped ones included',
    registers: [this.registry],
    collect: async () => {
      const live = await this.#figures?.liveExternalWorkers().catch(() => undefined);
      if (live === undefined) this.#externalWorkersLive.remove();
      else this.#externalWorkersLive.set(live);
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'yardmaster_' });
  }

  /** Counts `count` leases that lapsed and were ended here (the lease sweeper calls it). */
  countExpiredLeases(count: number): void {
    this.#leasesExpired.inc(count);
  }

  /** From now on, /metrics reports the jobs, queues, instances and external workers of the whole system. */
  reportSystem(figures: SystemFigures): void {
    this.#figures = figures;
  }

  /**
   * Fills both queue gauges from one query: prom-client collects all metrics of a rendering
   * at once, so the second gauge's collect joins the query the first one started.
   */
  async #collectQueues(): Promise<void> {
    this.#queueFigures ??= (this.#figures?.queues() ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => (this.#queueFigures = undefined));
    const queues = await this.#queueFigures;
    this.#jobs.reset();
    this.#queueDepth.reset();
    for (const { queue, queued, running, due } of queues ?? []) {
      this.#jobs.set({ queue, status: 'queued' }, queued);
      this.#jobs.set({ queue, status: 'running' }, running);
      this.#queueDepth.set({ queue }, due);
    }
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
