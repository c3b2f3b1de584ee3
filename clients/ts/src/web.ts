import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { Code, ConnectError } from '@connectrpc/connect';
import { createClientOnTransport, type CredentialOptions, type YardmasterClient } from './client.ts';
import { YardmasterError } from './errors.ts';
import { storageError, type PutFunction } from './transfers.ts';

export * from './common.ts';
export { downloadFile, uploadFile } from './transfers.ts';

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

/**
 * A PUT with XMLHttpRequest, for `uploadFile({ put: xhrPut })` in browsers: unlike fetch it
 * reports upload progress as the bytes go. Storage's CORS rule must expose the ETag header.
 */
export const xhrPut: PutFunction = ({ url, body, signal, onProgress }) =>
  new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve({ etag: xhr.getResponseHeader('ETag') ?? '' });
      else reject(storageError(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(new YardmasterError(new ConnectError('the upload to storage failed (network or CORS)', Code.Unavailable)));
    xhr.onabort = () => reject(YardmasterError.from(signal.reason, Code.Canceled));
    if (signal.aborted) return xhr.onabort(new ProgressEvent('abort'));
    signal.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(body as XMLHttpRequestBodyInit);
  });
