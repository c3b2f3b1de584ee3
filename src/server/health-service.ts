import type { ServiceImpl } from '@connectrpc/connect';
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../gen/grpc/health/v1/health_pb.ts';
import { notFound } from '../platform/domain-errors.ts';
import { Latch } from '../platform/events/latch.ts';
import type { Readiness } from './readiness.ts';

/**
 * grpc.health.v1.Health. The overall status ("") and every served service are
 * SERVING while the dependencies answer, NOT_SERVING otherwise. Every call reads the
 * instance's last dependency check (Readiness); none starts one.
 */
export function createHealthService(
  readiness: Readiness,
  serviceNames: () => string[],
  keepAliveMs: () => number,
): ServiceImpl<typeof Health> {
  const statusOf = async () => ((await readiness.current()).ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
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

    /**
     * Sends the status, then again whenever it changes. A quiet stream repeats it every
     * heartbeat interval, so that proxies and the server's idle timeout see it alive.
     */
    async *watch(req, ctx) {
      // An unknown service is SERVICE_UNKNOWN on Watch (not an error), per the protocol.
      const known = isKnown(req.service);
      const current = async () => (known ? await statusOf() : ServingStatus.SERVICE_UNKNOWN);
      const changed = new Latch();
      const unsubscribe = readiness.onChange(() => changed.set());
      try {
        let last = await current();
        yield { status: last };
        for (;;) {
          const woke = await changed.wait(keepAliveMs(), ctx.signal);
          if (woke === 'aborted') return;
          const status = await current();
          if (status !== last || woke === 'timeout') yield { status };
          last = status;
        }
      } finally {
        unsubscribe();
      }
    },
  };
}
