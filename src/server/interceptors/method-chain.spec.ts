import type { DescMethod } from '@bufbuild/protobuf';
import type { Interceptor, UnaryRequest, UnaryResponse } from '@connectrpc/connect';
import { expect, test } from 'vitest';
import { JobsService } from '../../../gen/yardmaster/v1/jobs_pb.ts';
import { AccessPolicies } from '../access-policies.ts';
import { methodChain } from './method-chain.ts';

const policies = new AccessPolicies([JobsService], []);

/** Runs one call of `method` through `chain` and returns the names of the interceptors it passed, in order. */
async function passedBy(chain: Parameters<typeof methodChain>[1], method: DescMethod): Promise<string[]> {
  const passed: string[] = [];
  const handler = (async () => ({ stream: false, message: {} }) as unknown as UnaryResponse) as never;
  const interceptor = methodChain(policies, chain);
  await interceptor(handler)({ method, passed } as unknown as UnaryRequest);
  return passed;
}

const named =
  (name: string): Interceptor =>
  (next) =>
  (req) => {
    (req as unknown as { passed: string[] }).passed.push(name);
    return next(req);
  };

test('a call passes the interceptors that apply to its method, outermost first, and those that always apply', async () => {
  const chain = [
    named('always'),
    { interceptor: named('streams only'), appliesTo: (_rule: unknown, method: { methodKind: string }) => method.methodKind !== 'unary' },
    { interceptor: named('not public'), appliesTo: (rule: { public: boolean }) => !rule.public },
    named('last'),
  ] as Parameters<typeof methodChain>[1];
  expect(await passedBy(chain, JobsService.method.getJob)).toEqual(['always', 'not public', 'last']);
  expect(await passedBy(chain, JobsService.method.watchJobs)).toEqual(['always', 'streams only', 'not public', 'last']);
  // The choice is made once per method and reused.
  expect(await passedBy(chain, JobsService.method.getJob)).toEqual(['always', 'not public', 'last']);
});
