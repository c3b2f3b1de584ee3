/**
 * The memory baseline of figure (b): a bare `node:http2` server that answers every
 * request with headers and one small message and then keeps the stream open, doing
 * nothing else. What an open stream costs it is what HTTP/2 in Node costs by itself.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const server = http2.createServer();
server.on('stream', (stream) => {
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
  stream.write(Buffer.from('open'));
  stream.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}`, msg: 'serving bare HTTP/2 streams' }));
});
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
