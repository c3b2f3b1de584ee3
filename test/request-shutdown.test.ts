/**
 * Which calls shutdown ends: streams and the unary methods declared as waiting (long
 * polls such as ClaimJobs) see their signal abort when shutdown begins; other unary calls
 * run to completion with their signal untouched.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterEach, expect, test } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../gen/grpc/health/v1/health_pb.ts';
import { createLogger } from '../src/platform/logger.ts';
import { createRpcHandler } from '../src/server/rpc-handler.ts';

let listener: http.Server | undefined;
afterEach(() => new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve())));

/** A server whose Check and Watch wait until `release` (or their signal aborts) and report whether it aborted. */
async function serverWith(waitingUnaryMethods: (typeof Health.method)[keyof typeof Health.method][]) {
  const shutdown = new AbortController();
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let callStarted = () => {};
  const started = new Promise<void>((resolve) => (callStarted = resolve));
  const until = (signal: AbortSignal) =>
    Promise.race([released, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
  const rpc = createRpcHandler({
    logger: createLogger('silent'),
    shutdownSignal: shutdown.signal,
    waitingUnaryMethods,
    routes: (router) =>
      router.service(Health, {
        async check(_req, ctx) {
          callStarted();
          await until(ctx.signal);
          return { status: ctx.signal.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING };
        },
        async *watch(_req, ctx) {
          callStarted();
          await until(ctx.signal);
          yield { status: ctx.signal.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING };
        },
      }),
  });
  listener = http.createServer(rpc);
  await new Promise<void>((resolve) => listener!.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  const client = createClient(Health, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
  return { client, shutdown, release, started };
}

test('shutdown leaves a unary call alone: it runs to completion with its signal not aborted', async () => {
  const server = await serverWith([]);
  const check = server.client.check({});
  await server.started;
  server.shutdown.abort();
  server.release();
  expect((await check).status).toBe(ServingStatus.SERVING);
});

test('shutdown aborts the signal of a server stream', async () => {
  const server = await serverWith([]);
  const statuses: ServingStatus[] = [];
  const watching = (async () => {
    for await (const message of server.client.watch({})) statuses.push(message.status);
  })();
  await server.started;
  server.shutdown.abort();
  await watching.catch(() => {});
  server.release();
  expect(statuses).not.toContain(ServingStatus.SERVING);
});

test('shutdown aborts the signal of a unary method declared as waiting (a long poll)', async () => {
  const server = await serverWith([Health.method.check]);
  const check = server.client.check({}).then(
    (reply) => reply.status,
    () => 'failed' as const,
  );
  await server.started;
  server.shutdown.abort();
  const outcome = await check;
  server.release();
  expect(outcome).not.toBe(ServingStatus.SERVING);
});
