import { createHash, timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, type Metric, Registry } from 'prom-client';
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
  readonly #calls = new Map<string, ProcedureCalls>();
  /** Every procedure's count by code, in the order of their first call (prom-client's order). */
  readonly #callCounts: CallCount[] = [];
  readonly #rpcCalls: Counter<'procedure' | 'code'> = new Counter({
    name: 'yardmaster_rpc_calls_total',
    help: 'RPC calls by procedure and result code',
    labelNames: ['procedure', 'code'] as const,
    registers: [this.registry],
    collect: () => {
      this.#rpcCalls.reset();
      for (const { procedure, code, count } of this.#callCounts) this.#rpcCalls.inc({ procedure, code }, count);
    },
  });
  readonly #rpcDuration = new TalliedHistogram(
    'yardmaster_rpc_duration_seconds',
    'RPC duration by procedure (until the last message of a stream)',
    this.#calls,
  );
  readonly openStreams = new Gauge({
    name: 'yardmaster_rpc_open_streams',
    help: 'Server streams open now, by procedure',
    labelNames: ['procedure'] as const,
    registers: [this.registry],
  });
  /** Credential checks by kind, then by outcome (tallied as the calls are, see `countCall`). */
  readonly #authAttemptCounts = new Map<string, Map<AuthAttemptOutcome, number>>();
  readonly #authAttempts: Counter<'kind' | 'outcome'> = new Counter({
    name: 'yardmaster_auth_attempts_total',
    help: 'Credential checks (login, registration, refresh, bearer credentials) by kind and outcome',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
    collect: () => {
      this.#authAttempts.reset();
      for (const [kind, byOutcome] of this.#authAttemptCounts) {
        for (const [outcome, count] of byOutcome) this.#authAttempts.inc({ kind, outcome }, count);
      }
    },
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
    this.registry.registerMetric(this.#rpcDuration as unknown as Metric);
    collectDefaultMetrics({ register: this.registry, prefix: 'yardmaster_' });
  }

  /**
   * The tally of one procedure's calls: the logging interceptor asks once per method and
   * counts each call with `countCall`.
   */
  callsOf(procedure: string): ProcedureCalls {
    let calls = this.#calls.get(procedure);
    if (!calls) {
      calls = new ProcedureCalls(procedure);
      this.#calls.set(procedure, calls);
    }
    return calls;
  }

  /** Counts one call that ended with `code` after `seconds`. */
  countCall(calls: ProcedureCalls, code: string, seconds: number): void {
    let counted = calls.byCode.get(code);
    if (!counted) {
      counted = { procedure: calls.procedure, code, count: 0 };
      calls.byCode.set(code, counted);
      this.#callCounts.push(counted);
    }
    counted.count += 1;
    calls.observe(seconds);
  }

  /** Counts one credential check. */
  countAuthAttempt(kind: string, outcome: AuthAttemptOutcome): void {
    let byOutcome = this.#authAttemptCounts.get(kind);
    if (!byOutcome) {
      byOutcome = new Map();
      this.#authAttemptCounts.set(kind, byOutcome);
    }
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
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

export type AuthAttemptOutcome = 'success' | 'failure';

/** The upper bounds of the call duration buckets, in seconds. */
const durationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600];

/**
 * The calls of one procedure in plain numbers: counts by result code and the duration
 * histogram's buckets. prom-client hashes the labels of every `inc` and `observe` (a few
 * microseconds per call, more than the rest of a call's bookkeeping); these tallies are
 * handed to it, or rendered, only when /metrics is scraped.
 */
interface CallCount {
  readonly procedure: string;
  readonly code: string;
  count: number;
}

export class ProcedureCalls {
  readonly byCode = new Map<string, CallCount>();
  /** Calls per bucket (not cumulative): `buckets[i]` counts durations in (bound i-1, bound i]. */
  readonly buckets = new Array<number>(durationBuckets.length).fill(0);
  sum = 0;
  count = 0;

  readonly procedure: string;

  constructor(procedure: string) {
    this.procedure = procedure;
  }

  observe(seconds: number): void {
    this.sum += seconds;
    this.count += 1;
    for (let i = 0; i < durationBuckets.length; i++) {
      if (seconds <= durationBuckets[i]!) {
        this.buckets[i]! += 1;
        return;
      }
    }
  }
}

/**
 * `yardmaster_rpc_duration_seconds`, rendered from the procedures' tallies in the shape
 * prom-client's own Histogram gives its registry (same lines, same order: buckets, +Inf,
 * sum, count per procedure, procedures in the order of their first call).
 */
class TalliedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  readonly name: string;
  readonly help: string;
  readonly calls: ReadonlyMap<string, ProcedureCalls>;

  constructor(name: string, help: string, calls: ReadonlyMap<string, ProcedureCalls>) {
    this.name = name;
    this.help = help;
    this.calls = calls;
  }

  getForPromString() {
    const values: {
      labels: Record<string, string | number>;
      sharedLabels: Record<string, string>;
      value: number;
      metricName: string;
      exemplar?: null;
    }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const calls of this.calls.values()) {
      const sharedLabels = { procedure: calls.procedure };
      let cumulative = 0;
      durationBuckets.forEach((le, i) => {
        cumulative += calls.buckets[i]!;
        values.push({ labels: { le }, sharedLabels, value: cumulative, metricName: bucket, exemplar: null });
      });
      values.push(
        { labels: { le: '+Inf' }, sharedLabels, value: calls.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels, value: calls.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels, value: calls.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** As prom-client's `get` (its JSON form): the shared labels folded into each value's own. */
  get() {
    const metric = this.getForPromString();
    return {
      ...metric,
      values: metric.values.map(({ sharedLabels, labels, ...value }) => ({ ...value, labels: { ...labels, ...sharedLabels } })),
    };
  }

  reset(): void {
    for (const calls of this.calls.values()) {
      calls.buckets.fill(0);
      calls.sum = 0;
      calls.count = 0;
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
