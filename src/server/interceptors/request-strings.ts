import type { Interceptor } from '@connectrpc/connect';
import type { DescMessage, Message } from '@bufbuild/protobuf';
import { invalidArgument } from '../../platform/domain-errors.ts';
import { unstorableStrings } from '../unstorable-strings.ts';

function check(desc: DescMessage, message: Message): void {
  const violations = unstorableStrings(desc, message);
  if (violations.length > 0) throw invalidArgument(violations);
}

async function* checkedMessages<M extends Message>(desc: DescMessage, messages: AsyncIterable<M>): AsyncIterable<M> {
  for await (const message of messages) {
    check(desc, message);
    yield message;
  }
}

/**
 * Refuses, once at the edge and for every method, request strings that PostgreSQL cannot
 * store (a NUL reached SQL as Internal and, in an audit target, cost the call its audit
 * record). Streamed requests are checked message by message as the handler reads them.
 * Not an async function, as `authorizationInterceptor`: it hands on `next`'s own promise.
 */
export function requestStringsInterceptor(): Interceptor {
  return (next) => (req) => {
    if (!req.stream) {
      check(req.method.input, req.message);
      return next(req);
    }
    return next({ ...req, message: checkedMessages(req.method.input, req.message) });
  };
}
