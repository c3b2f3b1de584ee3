/** The roles an account can have: what access policies are written in. */
export const roles = ['user', 'admin', 'worker'] as const;
export type RoleName = (typeof roles)[number];

/** Who is making a call, as established by their credentials. */
export interface Caller {
  userId: string;
  username: string;
  role: RoleName;
  /** Set when the caller used an access token: the session it belongs to. */
  sessionId?: string;
  /** Set when the caller used an API key. */
  apiKeyId?: string;
}

/** Where a call came from, as recorded on sessions and in the audit log. */
export interface ClientInfo {
  clientAddress: string;
  userAgent: string;
}

/**
 * The owner condition of what `caller` may see: every account's rows for admins, their
 * own for anyone else. Spread into a query (`{ id, ...visibleTo(caller) }`); `owner` is
 * undefined when nothing needs filtering.
 */
export function visibleTo(caller: Caller): { owner?: string } {
  return caller.role === 'admin' ? {} : { owner: caller.userId };
}
