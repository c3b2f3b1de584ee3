import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type Interceptor,
} from '@connectrpc/connect';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
  type ConnectNodeAdapterOptions,
} from '@connectrpc/connect-node';
import type { DescMethod } from '@bufbuild/protobuf';
import { createAsyncIterable, encodeEnvelope, type UniversalHandler } from '@connectrpc/connect/protocol';
import { codeToHttpStatus, errorToJsonBytes, headerUnaryContentLength, headerUnaryEncoding } from '@connectrpc/connect/protocol-connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { createTrailerSerialization, trailerFlag } from '@connectrpc/connect/protocol-grpc-web';
import type { Logger } from '../platform/logger.ts';
import type { HttpHandler } from './http-handler.ts';
import { directFramesKey, streamHandoffKey } from './context.ts';
import { DirectFrames } from './direct-frames.ts';
import { StreamHandoff } from './stream-handoff.ts';

/**
 * What one call has shown of its request's decoding: its handler context (to read the
 * error the call failed with) and whether the request got as far as the interceptors.
 */
interface RequestDecoding {
  context: HandlerContext | undefined;
  reachedInterceptors: boolean;
}

const requestDecodingKey = createContextKey<RequestDecoding | undefined>(undefined, { description: 'request decoding' });

/**
 * Connect's node adapter, with one difference: a request the server cannot decode
 * (malformed binary protobuf, a compressed message it cannot decompress) is answered
 * InvalidArgument on every protocol.
 *
 * connect-es reports its own parse failures as Internal (the right code for a client
 * that cannot read a server's answer, and the same code serves both sides), and for
 * unary calls that happens before any interceptor runs. So the decision is made where
 * the failure can still be told apart from a server bug: errors that come out of the
 * request stream are re-coded by the first interceptor, and a unary call that failed
 * with Internal before reaching the interceptors has its answer re-encoded. Nothing
 * is parsed twice; a call that decodes pays for one context entry and one flag.
 */
export function createRpcHandler(
  options: ConnectNodeAdapterOptions & {
    logger: Logger;
    /**
     * Unary methods that wait (long polls): they end when `shutdownSignal` aborts, as
     * every streaming method does. Other unary calls run to completion and are not linked
     * to it (connect would add and remove a listener on the signal for each call, and
     * Node scans the listeners already there on every add).
     */
    waitingUnaryMethods?: readonly DescMethod[];
    /** Server-streaming methods whose handler may take its stream out of Connect's pipeline once set up (`StreamHandoff`). */
    handoffMethods?: readonly DescMethod[];
  },
): HttpHandler {
  const {
    logger,
    routes,
    fallback,
    requestGate,
    contextValues,
    requestPathPrefix = '',
    shutdownSignal,
    waitingUnaryMethods = [],
    handoffMethods = [],
    ...routerOptions
  } = options;
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...routerOptions,
    interceptors: [requestDecodingInterceptor(), ...(routerOptions.interceptors ?? [])],
    requestGate: (context) => {
      endWithSharedReason(context);
      const decoding = context.values.get(requestDecodingKey);
      // Only a unary call's answer is ever re-encoded; a stream's context values outlive its
      // set-up (a taken stream keeps them for its log line), and must not keep its context.
      if (decoding && context.method.methodKind === 'unary') decoding.context = context;
      return requestGate?.(context);
    },
  });
  routes(router);
  const handlers = new Map(
    router.handlers.map((handler) => [
      requestPathPrefix + handler.requestPath,
      handler.method.methodKind === 'unary' ? reportUndecodableUnary(handler) : handler,
    ]),
  );
  const endingAtShutdown = new Set(
    router.handlers
      .map((handler) => handler.method)
      .filter((method) => method.methodKind !== 'unary' || waitingUnaryMethods.includes(method)),
  );
  return (req, res) => {
    const handler = handlers.get((req.url ?? '').split('?', 1)[0]!);
    if (!handler) {
      if (fallback) {
        fallback(req, res);
      } else {
        res.writeHead(404);
        res.end();
      }
      return;
    }
    const values = contextValues?.(req) ?? createContextValues();
    values.set(requestDecodingKey, { context: undefined, reachedInterceptors: false });
    const handoff = handoffMethods.includes(handler.method)
      ? new StreamHandoff(res, req.headers['content-type'], shutdownSignal)
      : undefined;
    if (handoff) values.set(streamHandoffKey, handoff);
    else if (handler.method.methodKind === 'server_streaming')
      values.set(directFramesKey, new DirectFrames(res, req.headers['content-type']));
    const request = universalRequestFromNodeRequest(req, res, undefined, values);
    handler(
      handoff
        ? { ...request, signal: handoff.callSignal(request.signal) }
        : shutdownSignal && endingAtShutdown.has(handler.method)
          ? { ...request, signal: AbortSignal.any([request.signal, shutdownSignal]) }
          : request,
    )
      .then((response) => universalResponseToNodeResponse(handoff ? handoff.wrap(response) : response, res))
      .catch((error: unknown) => {
        if (error instanceof ConnectError && error.code === Code.Aborted) return;
        logger.error({ err: error, procedure: handler.requestPath }, 'rpc handler failed');
      });
  };
}

/**
 * What a call's signal reports once the call is over. connect ends every call by aborting
 * its context without a reason, and Node then builds a fresh `DOMException` (capturing a
 * stack) for each call: a few microseconds and garbage per call. The reason is the same
 * kind of error either way; nothing reads its stack.
 */
const callEnded = new DOMException('This operation was aborted', 'AbortError');

/** Has the context's end-of-call abort (the one without a reason) report `callEnded`; other reasons pass as they are. */
function endWithSharedReason(context: HandlerContext & { abort?: (reason?: unknown) => void }): void {
  const abort = context.abort?.bind(context);
  if (abort) context.abort = (reason?: unknown) => abort(reason ?? callEnded);
}

/** The client's request could not be decoded: its fault, with connect's short reason and nothing else. */
function undecodable(error: ConnectError): ConnectError {
  return new ConnectError(error.rawMessage, Code.InvalidArgument);
}

/**
 * First in the chain: marks the call as decoded so far, and re-codes the Internal errors
 * that a request stream raises while it decodes the client's messages.
 */
function requestDecodingInterceptor(): Interceptor {
  return (next) => (req) => {
    const decoding = req.contextValues.get(requestDecodingKey);
    if (decoding) decoding.reachedInterceptors = true;
    if (!req.stream) return next(req);
    return next({ ...req, message: recodeDecodingErrors(req.message) });
  };
}

async function* recodeDecodingErrors<T>(messages: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (error) {
    throw error instanceof ConnectError && error.code === Code.Internal ? undecodable(error) : error;
  }
}

/**
 * A unary request is decoded before the interceptors run, and its failure is encoded
 * before the handler returns. When that failure was Internal and no interceptor ran,
 * the request itself was at fault: answer again, InvalidArgument, in the protocol's
 * own encoding.
 */
function reportUndecodableUnary(handler: UniversalHandler): UniversalHandler {
  const trailerSerialization = createTrailerSerialization();
  const wrapped = async (request: Parameters<UniversalHandler>[0]) => {
    const response = await handler(request);
    const decoding = request.contextValues?.get(requestDecodingKey);
    const context = decoding?.context;
    const failure: unknown = context?.signal.reason;
    if (!context || decoding.reachedInterceptors || !(failure instanceof ConnectError) || failure.code !== Code.Internal) return response;
    const error = undecodable(failure);
    // The failure's own answer is a few bytes, already produced: read it out of the way.
    for await (const chunk of response.body ?? []) void chunk;
    switch (context.protocolName) {
      case 'connect': {
        // Written uncompressed, whatever was negotiated: a client must accept identity.
        const body = errorToJsonBytes(error, {});
        const header = new Headers(response.header);
        header.delete(headerUnaryEncoding);
        header.set(headerUnaryContentLength, String(body.byteLength));
        return { ...response, status: codeToHttpStatus(error.code), header, body: createAsyncIterable([body]) };
      }
      case 'grpc':
        setTrailerStatus(context.responseTrailer, error);
        return { ...response, body: createAsyncIterable([]) };
      case 'grpc-web':
        setTrailerStatus(context.responseTrailer, error);
        return {
          ...response,
          body: createAsyncIterable([encodeEnvelope(trailerFlag, trailerSerialization.serialize(context.responseTrailer))]),
        };
      default:
        return response;
    }
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}
