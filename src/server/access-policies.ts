import { getOption, hasOption, type DescMethod, type DescService } from '@bufbuild/protobuf';
import { access, AuditMode } from '../../gen/yardmaster/v1/access_pb.ts';
import type { RoleName } from '../platform/caller.ts';
import { roleFromProto } from '../platform/role-names.ts';

/** The access rule of one method, as declared in the contract. */
export interface MethodAccess {
  /** Full method name, e.g. `yardmaster.v1.AuthService.GetMe`. */
  name: string;
  public: boolean;
  roles: ReadonlySet<RoleName>;
  audit: 'none' | 'all' | 'failures' | 'admin_calls';
  auditTargetField: string;
  /** Defined when the method checks credentials and is rate limited. */
  rateLimit: { accountField: string; checksPassword: boolean } | undefined;
  /** Counts against the caller's limit of concurrent heavy calls. */
  heavy: boolean;
  /** The caller must use an access token (an interactive session), not an API key. */
  sessionRequired: boolean;
}

const auditModeNames: Partial<Record<AuditMode, MethodAccess['audit']>> = {
  [AuditMode.ALL]: 'all',
  [AuditMode.FAILURES]: 'failures',
  [AuditMode.ADMIN_CALLS]: 'admin_calls',
};

export function methodName(method: DescMethod): string {
  return `${method.parent.typeName}.${method.name}`;
}

/**
 * Every served method's access rule, read once from the method descriptors. A
 * Yardmaster method without a rule is a start-up error, so forgetting one can never
 * leave a method open. Standard protocol services (health, reflection) cannot carry
 * our option; they are public by definition.
 */
export class AccessPolicies {
  readonly #byName = new Map<string, MethodAccess>();
  /** The same rules by descriptor: a call's lookup is one identity hash, no name built. */
  readonly #byMethod = new Map<DescMethod, MethodAccess>();

  constructor(services: DescService[], publicStandardServices: DescService[]) {
    const missing: string[] = [];
    for (const service of services) {
      for (const method of service.methods) {
        if (!hasOption(method, access)) {
          missing.push(methodName(method));
          continue;
        }
        const rule = getOption(method, access);
        const roles = new Set(rule.roles.map(roleFromProto).filter((role): role is RoleName => role !== undefined));
        if (!rule.public && roles.size === 0) missing.push(`${methodName(method)} (no roles)`);
        this.#byName.set(methodName(method), {
          name: methodName(method),
          public: rule.public,
          roles,
          audit: auditModeNames[rule.audit] ?? 'none',
          auditTargetField: rule.auditTargetField,
          rateLimit: rule.credentialRateLimit
            ? { accountField: rule.credentialRateLimit.accountField, checksPassword: rule.credentialRateLimit.checksPassword }
            : undefined,
          sessionRequired: rule.sessionRequired,
          heavy: rule.heavy,
        });
      }
    }
    if (missing.length > 0) {
      throw new Error(`methods without an access rule (option yardmaster.v1.access): ${missing.join(', ')}`);
    }
    for (const service of publicStandardServices) {
      for (const method of service.methods) {
        this.#byName.set(methodName(method), {
          name: methodName(method),
          public: true,
          roles: new Set(),
          audit: 'none',
          auditTargetField: '',
          rateLimit: undefined,
          heavy: false,
          sessionRequired: false,
        });
      }
    }
  }

  forMethod(method: DescMethod): MethodAccess {
    const known = this.#byMethod.get(method);
    if (known) return known;
    const rule = this.#byName.get(methodName(method));
    if (!rule) throw new Error(`no access rule for ${methodName(method)}`);
    this.#byMethod.set(method, rule);
    return rule;
  }

  /** Every Yardmaster method a caller of `role` may call, sorted. */
  methodsFor(role: RoleName): string[] {
    return [...this.#byName.values()]
      .filter((rule) => rule.name.startsWith('yardmaster.') && (rule.public || rule.roles.has(role)))
      .map((rule) => rule.name)
      .sort();
  }
}
