import type { DescMethod } from '@bufbuild/protobuf';
import type { Interceptor } from '@connectrpc/connect';
import type { AccessPolicies, MethodAccess } from '../access-policies.ts';

/** An interceptor with the methods it has anything to do for; for the others it would only call `next`. */
export interface ScopedInterceptor {
  interceptor: Interceptor;
  appliesTo(rule: MethodAccess, method: DescMethod): boolean;
}

/**
 * The interceptors in `chain` (outermost first) as one: each call runs only those that
 * apply to its method, chosen once per method from the contract's rule. Connect wraps
 * every interceptor around every call (a closure and an async step each); most of ours
 * pass most calls straight on (limits of streams, heavy calls and credential checks,
 * audit of declared methods), so a GetJob now pays for the five that act on it, not eleven.
 */
export function methodChain(policies: AccessPolicies, chain: readonly (Interceptor | ScopedInterceptor)[]): Interceptor {
  const byMethod = new Map<DescMethod, Interceptor[]>();
  const interceptorsFor = (method: DescMethod): Interceptor[] => {
    let selected = byMethod.get(method);
    if (!selected) {
      const rule = policies.forMethod(method);
      selected = chain
        .filter((entry) => typeof entry === 'function' || entry.appliesTo(rule, method))
        .map((entry) => (typeof entry === 'function' ? entry : entry.interceptor));
      byMethod.set(method, selected);
    }
    return selected;
  };
  return (next) => (req) => {
    const selected = interceptorsFor(req.method);
    let call = next;
    for (let index = selected.length - 1; index >= 0; index--) call = selected[index]!(call);
    return call(req);
  };
}
