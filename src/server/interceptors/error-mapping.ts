import type { Interceptor } from '@connectrpc/connect';
import { loggerKey } from '../context.ts';
import { toConnectError } from '../error-mapping.ts';
import { observeStream } from './server-streams.ts';

/**
 * Maps every error below it, including those thrown while a server stream is being
 * read, to the Connect error the client should see.
 */
export function errorMappingInterceptor(): Interceptor {
  return (next) => async (req) => {
    const logger = req.contextValues.get(loggerKey);
    let res;
    try {
      res = await next(req);
    } catch (error) {
      throw toConnectError(error, logger);
    }
    if (!res.stream) return res;
    return observeStream(res, req.signal, { mapError: (error) => toConnectError(error, logger) });
  };
}
