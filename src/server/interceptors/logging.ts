import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { callerKey, loggerKey } from '../context.ts';
import type { ServerMetrics } from '../metrics.ts';
import { methodName } from '../access-policies.ts';
import { codeName } from './code-names.ts';
import { observeStream } from './server-streams.ts';

/**
 * One structured log line and one metrics sample per call, written when the call ends
 * (for a stream: after its last message), with the code the client saw.
 */
export function loggingInterceptor(metrics: ServerMetrics): Interceptor {
  return (next) => async (req) => {
    const procedure = methodName(req.method);
    const started = performance.now();
    const finish = (error: unknown) => {
      const code = error === undefined ? 'ok' : codeName(error instanceof ConnectError ? error.code : Code.Unknown);
      const durationMs = performance.now() - started;
      metrics.rpcCalls.inc({ procedure, code });
      metrics.rpcDuration.observe({ procedure }, durationMs / 1000);
      const caller = req.contextValues.get(callerKey);
      const logger = req.contextValues.get(loggerKey);
      const line = {
        procedure,
        code,
        durationMs: Math.round(durationMs * 10) / 10,
        userId: caller?.userId,
        username: caller?.username,
      };
      if (error instanceof ConnectError && error.code === Code.Internal) logger?.error(line, 'call failed');
      else logger?.info(line, 'call');
    };

    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (error) {
      finish(error);
      throw error;
    }
    if (!res.stream) {
      finish(undefined);
      return res;
    }
    metrics.openStreams.inc({ procedure });
    return observeStream(res, req.signal, {
      end: (how) => {
        metrics.openStreams.dec({ procedure });
        finish(how.kind === 'failed' ? how.error : undefined);
      },
    });
  };
}
