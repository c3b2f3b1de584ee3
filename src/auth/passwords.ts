import { hash, verify } from '@node-rs/argon2';
import { randomBytes } from 'node:crypto';
import type { Violations } from '../platform/domain-errors.ts';

/** argon2id (the library's default algorithm) at OWASP's minimum cost: 19 MiB, 2 passes, 1 lane. */
const argon2Options = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/** Longer passwords are refused: hashing cost must stay bounded whatever a stranger sends. */
export const maxPasswordLength = 1024;

export function hashPassword(password: string): Promise<string> {
  return hash(password, argon2Options);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

let decoyHash: Promise<string> | undefined;

/**
 * Spends the same time as checking a real password. Used when the account does not
 * exist, so that an unknown username and a wrong password cannot be told apart by timing.
 */
export async function verifyDecoyPassword(password: string): Promise<false> {
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'));
  await verifyPassword(await decoyHash, password);
  return false;
}

export function checkPasswordPolicy(password: string, minLength: number, field: string, violations: Violations): void {
  const length = [...password].length;
  if (length < minLength) violations.add(field, `must be at least ${minLength} characters`);
  else if (length > maxPasswordLength) violations.add(field, `must be at most ${maxPasswordLength} characters`);
}

/** A password (at least 24 characters, 144 random bits) for an account whose password nobody chose. */
export function generatePassword(minLength = 0): string {
  const length = Math.max(24, minLength);
  return randomBytes(Math.ceil((length * 3) / 4))
    .toString('base64url')
    .slice(0, length);
}
