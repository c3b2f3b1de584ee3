import type { EntityManager } from '../platform/db/orm.ts';
import { alreadyExists, Violations } from '../platform/domain-errors.ts';
import { newId } from '../platform/ids.ts';
import { checkPasswordPolicy, hashPassword } from './passwords.ts';
import { User, type RoleName } from './entities.ts';

const usernamePattern = /^[a-z0-9._-]{3,64}$/;
// Deliberately loose: the only reliable e-mail check is sending one. This catches typos
// such as a missing @ or domain, and anything that could not be an address.
const emailPattern = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

export function normalizeUsername(username: string): string {
  return username.trim().toLowerCase();
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function checkUsername(username: string, field: string, violations: Violations): void {
  violations.check(usernamePattern.test(username), field, "must be 3 to 64 characters of a-z, 0-9, '.', '_' and '-'");
}

export function checkEmail(email: string, field: string, violations: Violations): void {
  violations.check(email.length <= 320 && emailPattern.test(email), field, 'must be an e-mail address');
}

export interface NewAccount {
  username: string;
  email: string;
  password: string;
  role: RoleName;
}

export interface NewAccountFields {
  username: string;
  email: string;
  password: string;
}

/**
 * Creates an account after checking every field (InvalidArgument naming each bad one,
 * together with any the caller already found) and that username and e-mail are free
 * (AlreadyExists naming the taken one).
 */
export async function createAccount(
  em: EntityManager,
  input: NewAccount,
  passwordMinLength: number,
  fields: NewAccountFields,
  violations: Violations = new Violations(),
): Promise<User> {
  const username = normalizeUsername(input.username);
  const email = normalizeEmail(input.email);
  checkUsername(username, fields.username, violations);
  checkEmail(email, fields.email, violations);
  checkPasswordPolicy(input.password, passwordMinLength, fields.password, violations);
  violations.throwIfAny();
  await ensureIdentityFree(em, { username, email }, undefined, fields);
  const user = em.create(User, {
    id: newId(),
    username,
    email,
    passwordHash: await hashPassword(input.password),
    role: input.role,
    active: true,
  });
  await em.flush();
  return user;
}

/** AlreadyExists when another account (not `exceptId`) uses the username or e-mail. */
export async function ensureIdentityFree(
  em: EntityManager,
  identity: { username?: string; email?: string },
  exceptId: string | undefined,
  fields: { username: string; email: string },
): Promise<void> {
  const conditions = [];
  if (identity.username !== undefined) conditions.push({ username: identity.username });
  if (identity.email !== undefined) conditions.push({ email: identity.email });
  if (conditions.length === 0) return;
  const taken = await em.find(User, { $or: conditions, ...(exceptId ? { id: { $ne: exceptId } } : {}) });
  for (const other of taken) {
    if (other.username === identity.username) throw alreadyExists(`the username "${identity.username}" is taken`, fields.username);
    if (other.email === identity.email) throw alreadyExists('the e-mail address is used by another account', fields.email);
  }
}
