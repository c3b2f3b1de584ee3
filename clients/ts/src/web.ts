import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { createClientOnTransport, type CredentialOptions, type YardmasterClient } from './client.ts';

export type { CredentialOptions, SessionTokens, YardmasterClient } from './client.ts';

export interface WebClientOptions extends CredentialOptions {
  /** Server address, e.g. https://yardmaster.example.com (its CORS_ORIGINS must list this page's origin). */
  baseUrl: string;
  /** Browsers speak Connect or gRPC-Web; gRPC needs HTTP trailers they do not expose. */
  protocol?: 'connect' | 'grpc-web';
  /** Protobuf binary instead of JSON. Default: JSON for Connect, binary for gRPC-Web. */
  binary?: boolean;
}

/** A typed Yardmaster client for browsers. */
export function createYardmasterClient(options: WebClientOptions): YardmasterClient {
  const make = options.protocol === 'grpc-web' ? createGrpcWebTransport : createConnectTransport;
  return createClientOnTransport(
    (interceptors) => make({ baseUrl: options.baseUrl, interceptors, useBinaryFormat: options.binary ?? options.protocol === 'grpc-web' }),
    options,
    () => {},
  );
}
