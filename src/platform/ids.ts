import { v7 as uuidv7, validate as validateUuid } from 'uuid';
import { invalidField } from './domain-errors.ts';

/** A new time-ordered UUID (v7): ids sort by creation, which keeps keyset pages and indexes tidy. */
export function newId(): string {
  return uuidv7();
}

export function isUuid(value: string): boolean {
  return validateUuid(value);
}

/** InvalidArgument naming `field` unless `value` is a UUID. */
export function requireId(value: string, field: string): void {
  if (!isUuid(value)) throw invalidField(field, value === '' ? 'is required' : 'must be a UUID');
}

/** AIP-155: how long a create's request id returns the first response; after that it is free again. */
export const idempotencyWindowMs = 24 * 3_600_000;
