/**
 * The baseline of the request-path figures: a bare connect-node server with JobsService's
 * GetJob and CreateJob answering a fixed Job, without authentication, database or
 * interceptors. It listens as the server does: one cleartext port on which a connection
 * starting with the HTTP/2 preface is served by an HTTP/2 server (gRPC) and any other by
 * an HTTP/1.1 server (Connect JSON), so both sides pay for the same transport.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { JobSchema, JobStatus, JobsService } from '../gen/yardmaster/v1/jobs_pb.ts';

const now = timestampNow();
const job = create(JobSchema, {
  id: '0193b8f2-6c1e-7a4b-9c1d-2f3e4a5b6c7d',
  type: 'noop',
  name: 'a job',
  status: JobStatus.QUEUED,
  attempt: 0,
  maxAttempts: 3,
  createTime: now,
  updateTime: now,
  runAfter: now,
});

const handler = connectNodeAdapter({
  routes(router) {
    router.rpc(JobsService.method.getJob, async () => ({ job }));
    router.rpc(JobsService.method.createJob, async () => ({ job }));
  },
});

const http1 = http.createServer(handler);
const h2 = http2.createServer({ settings: { maxConcurrentStreams: 256 } }, handler);
const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const server = net.createServer((socket) => {
  socket.once('readable', () => {
    const head = socket.read(preface.length) as Buffer | null;
    if (head) socket.unshift(head);
    (head?.equals(preface) ? h2 : http1).emit('connection', socket);
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}`, msg: 'serving bare connect-node GetJob and CreateJob' }));
});
process.on('SIGTERM', () => process.exit(0));
