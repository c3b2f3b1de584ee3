import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { createClientOnTransport, type CredentialOptions, type YardmasterClient } from './client.ts';

export type { CredentialOptions, SessionTokens, YardmasterClient } from './client.ts';

export interface NodeClientOptions extends CredentialOptions {
  /** Server address, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  /** Wire protocol: Connect (JSON by default), gRPC (always HTTP/2) or gRPC-Web. */
  protocol?: 'connect' | 'grpc' | 'grpc-web';
  /** HTTP version for Connect and gRPC-Web; gRPC always uses HTTP/2. Default "1.1". */
  httpVersion?: '1.1' | '2';
  /** Protobuf binary instead of JSON. Default: JSON for Connect, binary for gRPC and gRPC-Web (their standard forms). */
  binary?: boolean;
}

/** A typed Yardmaster client for Node.js: every service, with credentials and token refresh. */
export function createYardmasterClient(options: NodeClientOptions): YardmasterClient {
  const protocol = options.protocol ?? 'connect';
  const httpVersion = protocol === 'grpc' ? '2' : (options.httpVersion ?? '1.1');
  // One HTTP/2 session shared by both transports, closed by close(). Its receive window is
  // raised from the protocol's 64 KiB, which would cap downloads at one window per round trip.
  // It closes itself after 30 s without calls, before the server's keep-alive timeout (65 s
  // by default) sends GOAWAY: connect-node can crash on a GOAWAY of an idle connection
  // (connectrpc/connect-es#1768).
  const sessionManager =
    httpVersion === '2'
      ? new Http2SessionManager(options.baseUrl, { idleConnectionTimeoutMs: 30_000 }, { settings: { initialWindowSize: 4 * 1024 * 1024 } })
      : undefined;
  const makeTransport = (interceptors: Parameters<typeof createConnectTransport>[0]['interceptors']) => {
    const common = { baseUrl: options.baseUrl, interceptors, useBinaryFormat: options.binary ?? protocol !== 'connect' };
    if (protocol === 'grpc') return createGrpcTransport({ ...common, sessionManager });
    if (sessionManager) {
      const http2 = { ...common, httpVersion: '2' as const, sessionManager };
      return protocol === 'grpc-web' ? createGrpcWebTransport(http2) : createConnectTransport(http2);
    }
    const http1 = { ...common, httpVersion: '1.1' as const };
    return protocol === 'grpc-web' ? createGrpcWebTransport(http1) : createConnectTransport(http1);
  };
  return createClientOnTransport(
    (interceptors) => makeTransport(interceptors),
    options,
    () => sessionManager?.abort(),
  );
}
