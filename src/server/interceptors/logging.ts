import type { DescMethod } from '@bufbuild/protobuf';
import { Code, ConnectError, type ContextValues, type Interceptor } from '@connectrpc/connect';
import type { Caller } from '../../platform/caller.ts';
import type { Logger } from '../../platform/logger.ts';
import { callerKey, requestIdKey } from '../context.ts';
import type { ProcedureCalls, ServerMetrics } from '../metrics.ts';
import { methodName } from '../access-policies.ts';
import { codeName } from './code-names.ts';
import { observeStream, type StreamHooks } from './server-streams.ts';

/**
 * One structured log line and one metrics sample per call, written when the call ends
 * (for a stream: after its last message), with the code the client saw.
 *
 * The line has a fixed shape that holds no credential, so it is written by a child of
 * `logger` without redaction (redaction walks every logged object: it was a third of a
 * line's cost), with the request id as a field rather than through a logger per call.
 */
export function loggingInterceptor(metrics: ServerMetrics, logger: Logger): Interceptor {
  const callLog = logger.child({}, { redact: { paths: [] } });
  const tallies = new Map<DescMethod, ProcedureCalls>();
  const callsOf = (method: DescMethod) => {
    let calls = tallies.get(method);
    if (calls === undefined) {
      calls = metrics.callsOf(methodName(method));
      tallies.set(method, calls);
    }
    return calls;
  };
  return (next) => async (req) => {
    const calls = callsOf(req.method);
    const procedure = calls.procedure;
    const started = performance.now();
    const finish = callFinisher(metrics, callLog, calls, req.contextValues, started);
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
    // The stream's line names the call as it stands now (authenticated): its context
    // values, which a stream that leaves Connect's pipeline would otherwise keep, are not held.
    const streamFinish = callFinisher(metrics, callLog, calls, callNamesOf(req.contextValues), started);
    return observeStream(res, req, streamEndHooks(metrics, procedure, streamFinish));
  };
}

/**
 * What writes the call's line and samples once it has ended. Made here, not inside the
 * interceptor: a stream that leaves Connect's pipeline keeps its end hook, and a closure
 * made in the interceptor would keep the call's request and the chain of every `next`.
 */
function callFinisher(
  metrics: ServerMetrics,
  callLog: Logger,
  calls: ProcedureCalls,
  /** The call's values (read when it ends), or what they said once read. */
  names: ContextValues | CallNames,
  started: number,
): (error: unknown) => void {
  const procedure = calls.procedure;
  return (error) => {
    const code = error === undefined ? 'ok' : codeName(error instanceof ConnectError ? error.code : Code.Unknown);
    const durationMs = performance.now() - started;
    metrics.countCall(calls, code, durationMs / 1000);
    const { requestId, caller } = 'get' in names ? callNamesOf(names) : names;
    const line = {
      requestId,
      procedure,
      code,
      durationMs: Math.round(durationMs * 10) / 10,
      userId: caller?.userId,
      username: caller?.username,
    };
    if (error instanceof ConnectError && error.code === Code.Internal) callLog.error(line, 'call failed');
    else callLog.info(line, 'call');
  };
}

/** What names a call in its line: its request id and caller. */
interface CallNames {
  requestId: string;
  caller: Caller | undefined;
}

function callNamesOf(values: ContextValues): CallNames {
  return { requestId: values.get(requestIdKey), caller: values.get(callerKey) };
}

function streamEndHooks(metrics: ServerMetrics, procedure: string, finish: (error: unknown) => void): StreamHooks {
  return {
    end: (how) => {
      metrics.openStreams.dec({ procedure });
      finish(how.kind === 'failed' ? how.error : undefined);
    },
  };
}
