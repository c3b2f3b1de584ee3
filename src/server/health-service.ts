import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceImpl } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../gen/grpc/health/v1/health_pb.ts';
import { notFound } from '../domain-errors.ts';
import type { Readiness } from './readiness.ts';

const watchIntervalMs = 5000;

/**
 * grpc.health.v1.Health. The overall status ("") and every served service are
 * SERVING while the dependencies answer, NOT_SERVING otherwise.
 */
export function createHealthService(readiness: Readiness, serviceNames: () => string[]): ServiceImpl<typeof Health> {
  const statusOf = async () => ((await readiness.check()).ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const isKnown = (service: string) => service === '' || serviceNames().includes(service);
  return {
    async check(req) {
      if (!isKnown(req.service)) throw notFound(`service "${req.service}"`);
      return { status: await statusOf() };
    },

    async list() {
      const status = await statusOf();
      return { statuses: Object.fromEntries(['', ...serviceNames()].map((name) => [name, { status }])) };
    },

    async *watch(req, ctx) {
      let last: ServingStatus | undefined;
      while (!ctx.signal.aborted) {
        const status = isKnown(req.service) ? await statusOf() : ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        await sleep(watchIntervalMs, undefined, { signal: ctx.signal }).catch(() => {});
      }
    },
  };
}
