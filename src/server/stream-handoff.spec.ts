import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import { afterEach, expect, test } from 'vitest';
import type { StreamEnd } from './interceptors/server-streams.ts';
import { StreamHandoff } from './stream-handoff.ts';

/**
 * A gRPC server stream over Node's HTTP/2 compat API (as connect-node serves it): its
 * first message goes through the compat response, then the stream is taken over, as a
 * WatchJobs stream is once set up.
 */
async function takenStreamServer() {
  const shutdown = new AbortController();
  const taken = Promise.withResolvers<{ handoff: StreamHandoff; res: http2.Http2ServerResponse }>();
  const owner = { ended: Promise.withResolvers<void>(), streamEnded: () => owner.ended.resolve() };
  const hookEnds: StreamEnd[] = [];
  const server = http2.createServer((req, res) => {
    req.resume();
    req.once('end', () => {
      const handoff = new StreamHandoff(res, 'application/grpc', shutdown.signal);
      handoff.adopt({ end: (how) => void hookEnds.push(how) });
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.write(encodeEnvelope(0, new Uint8Array([1])));
      handoff.take(owner);
      taken.resolve({ handoff, res });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on('error', () => {});
  const call = session.request({ ':method': 'POST', ':path': '/stream', 'content-type': 'application/grpc', te: 'trailers' });
  call.on('error', () => {});
  call.end(encodeEnvelope(0, new Uint8Array()));
  const received: Buffer[] = [];
  call.on('data', (chunk: Buffer) => received.push(chunk));
  const trailers = new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
    let headers: http2.IncomingHttpHeaders | undefined;
    call.on('trailers', (trailing) => (headers = trailing));
    call.on('close', () => resolve(headers));
  });
  closers.push(async () => {
    session.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { ...(await taken.promise), call, received, trailers, owner, hookEnds, shutdown };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

test('over HTTP/2, a taken stream is written to through its Http2Stream, which no longer refers to its compat request and response', async () => {
  const { handoff, res, call, received, trailers, owner, hookEnds } = await takenStreamServer();
  const stream = res.stream as http2.ServerHttp2Stream & Record<symbol, unknown>;
  const compatReferences = Object.getOwnPropertySymbols(stream).filter((symbol) =>
    ['request', 'response'].includes(symbol.description ?? ''),
  );
  expect(compatReferences).toHaveLength(2);
  expect(compatReferences.map((symbol) => stream[symbol])).toEqual([undefined, undefined]);
  // The compat listeners that would read them are gone: a timeout or the trailers do not throw.
  expect(stream.listeners('wantTrailers')).toEqual([]);
  expect(() => stream.emit('timeout')).not.toThrow();

  handoff.write(encodeEnvelope(0, new Uint8Array([2])));
  handoff.end();
  expect(await trailers).toMatchObject({ 'grpc-status': '0' });
  expect([...Buffer.concat(received)]).toEqual([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 2]);
  await owner.ended.promise;
  expect(hookEnds).toEqual([{ kind: 'done' }]);
  expect(call.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
});

test('a taken HTTP/2 stream the client resets ends as stopped: its owner and its hooks are told', async () => {
  const { call, owner, hookEnds } = await takenStreamServer();
  call.close(http2.constants.NGHTTP2_CANCEL);
  await owner.ended.promise;
  expect(hookEnds).toEqual([{ kind: 'stopped' }]);
});

test('a taken HTTP/2 stream ends well, with gRPC trailers, when the server shuts down', async () => {
  const { trailers, owner, hookEnds, shutdown } = await takenStreamServer();
  shutdown.abort();
  expect(await trailers).toMatchObject({ 'grpc-status': '0' });
  await owner.ended.promise;
  expect(hookEnds).toEqual([{ kind: 'done' }]);
});
