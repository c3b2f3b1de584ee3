import { Counter, Histogram, Registry } from 'prom-client';
import { expect, test } from 'vitest';
import { ServerMetrics } from './metrics.ts';

/** The three per-call metrics as prom-client's own Counter and Histogram keep them, fed the same calls. */
function promClientReference() {
  const registry = new Registry();
  const calls = new Counter({
    name: 'yardmaster_rpc_calls_total',
    help: 'RPC calls by procedure and result code',
    labelNames: ['procedure', 'code'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'yardmaster_rpc_duration_seconds',
    help: 'RPC duration by procedure (until the last message of a stream)',
    labelNames: ['procedure'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
    registers: [registry],
  });
  const authAttempts = new Counter({
    name: 'yardmaster_auth_attempts_total',
    help: 'Credential checks (login, registration, refresh, bearer credentials) by kind and outcome',
    labelNames: ['kind', 'outcome'],
    registers: [registry],
  });
  return { registry, calls, duration, authAttempts };
}

/** The blocks of the metrics text that name one of the per-call metrics, in a fixed order. */
function perCallBlocks(text: string): string[] {
  return text
    .trim()
    .split('\n\n')
    .map((block) => block.trim())
    .filter((block) => /yardmaster_(rpc_calls_total|rpc_duration_seconds|auth_attempts_total)/.test(block))
    .sort();
}

test('calls and credential checks tallied per procedure render exactly as prom-client would have rendered them', async () => {
  const reference = promClientReference();
  const metrics = new ServerMetrics();
  const calls: [string, string, number][] = [
    ['yardmaster.v1.JobsService.GetJob', 'ok', 0.0004],
    ['yardmaster.v1.AuthService.Login', 'unauthenticated', 0.02],
    ['yardmaster.v1.JobsService.GetJob', 'ok', 0.7],
    ['yardmaster.v1.JobsService.GetJob', 'internal', 1000],
    ['yardmaster.v1.AuthService.Login', 'ok', 0.001],
    ['yardmaster.v1.JobsService.GetJob', 'ok', 0.005],
  ];
  for (const [procedure, code, seconds] of calls) {
    reference.calls.inc({ procedure, code });
    reference.duration.observe({ procedure }, seconds);
    metrics.countCall(metrics.callsOf(procedure), code, seconds);
  }
  for (const [kind, outcome] of [
    ['access_token', 'success'],
    ['api_key', 'failure'],
    ['access_token', 'success'],
  ] as const) {
    reference.authAttempts.inc({ kind, outcome });
    metrics.countAuthAttempt(kind, outcome);
  }

  const ours = await metrics.registry.metrics();
  expect(perCallBlocks(ours)).toEqual(perCallBlocks(await reference.registry.metrics()));
  expect(ours).toMatch(/^yardmaster_rpc_calls_total\{procedure="yardmaster\.v1\.JobsService\.GetJob",code="ok"\} 3$/m);
  expect(ours).toMatch(/^yardmaster_rpc_duration_seconds_bucket\{le="\+Inf",procedure="yardmaster\.v1\.JobsService\.GetJob"\} 4$/m);
  // The JSON form too (getMetricsAsJSON), for whoever reads the registry that way.
  const durationOf = async (registry: Registry) =>
    (await registry.getMetricsAsJSON()).find((metric) => metric.name === 'yardmaster_rpc_duration_seconds');
  expect(await durationOf(metrics.registry)).toEqual(await durationOf(reference.registry));

  // Scraping twice counts nothing twice.
  expect(perCallBlocks(await metrics.registry.metrics())).toEqual(perCallBlocks(ours));
});
