import type { Interceptor } from '@connectrpc/connect';
import type { Logger } from '../../platform/logger.ts';
import { loggerKey, loggerOf } from '../context.ts';
import { toConnectError } from '../error-mapping.ts';
import { observeStream, type StreamHooks } from './server-streams.ts';

type Next = Parameters<Interceptor>[0];

/**
 * `next` with every error it ends with, also one thrown while its server stream is read,
 * mapped to the ConnectError the client will see. An error is mapped where it first
 * passes through here and travels on mapped: interceptors that act on a call's outcome
 * (audit, credential rate limit) wrap their `next` with this and read the client's code
 * and reason, and the mapping further out passes the ConnectError on as it is.
 */
export function withMappedErrors(next: Next): Next {
  return async (req) => {
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (error) {
      throw toConnectError(error, loggerOf(req.contextValues));
    }
    if (!res.stream) return res;
    return observeStream(res, req, mapErrorsOf(req.contextValues.get(loggerKey)));
  };
}

/**
 * The hook that maps a stream's errors, made apart from the call's request: a stream that
 * leaves Connect's pipeline keeps it, and a closure over the request would keep that
 * whole pipeline (over its context values, all of them).
 */
function mapErrorsOf(logger: (() => Logger) | undefined): StreamHooks {
  return { mapError: (error) => toConnectError(error, logger?.()) };
}

/**
 * Maps every error below it, including those thrown while a server stream is being
 * read, to the Connect error the client should see.
 */
export function errorMappingInterceptor(): Interceptor {
  return withMappedErrors;
}
