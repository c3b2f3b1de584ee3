import type http2 from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import { WatchJobsRequestSchema } from '../gen/yardmaster/v1/jobs_pb.ts';

const noopWatchRequest = encodeEnvelope(
  0,
  toBinary(WatchJobsRequestSchema, create(WatchJobsRequestSchema, { filter: { types: ['noop'] } })),
);

/**
 * A WatchJobs call of noop jobs sent as raw gRPC over `session`, read by the caller frame by
 * frame: what arrives is the server's bytes, not a client library's decoding of them.
 */
export function requestNoopWatch(session: http2.ClientHttp2Session, apiKey: string): http2.ClientHttp2Stream {
  const stream = session.request({
    ':method': 'POST',
    ':path': '/yardmaster.v1.JobsService/WatchJobs',
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${apiKey}`,
  });
  stream.end(noopWatchRequest);
  return stream;
}
