import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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
