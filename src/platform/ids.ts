import { randomFillSync } from 'node:crypto';
import { v7 as uuidv7, validate as validateUuid } from 'uuid';
import { invalidField } from './domain-errors.ts';

/**
 * Random bytes for new ids, drawn 4 KiB at a time: uuid asks `crypto.getRandomValues` for
 * 16 bytes per id, which cost five times what the rest of an id does.
 */
const randomPool = new Uint8Array(4096);
let randomAt = randomPool.length;
/** uuid's own monotonic state, kept here since the random bytes are handed to it. */
const clock = { msecs: Number.NEGATIVE_INFINITY, seq: 0 };

/** A new time-ordered UUID (v7): ids sort by creation, which keeps keyset pages and indexes tidy. */
export function newId(): string {
  if (randomAt + 16 > randomPool.length) {
    randomFillSync(randomPool);
    randomAt = 0;
  }
  const random = randomPool.subarray(randomAt, randomAt + 16);
  randomAt += 16;
  // As uuid does without options: a new millisecond starts the counter at a random value,
  // within one millisecond it counts up (and a wrap moves to the next millisecond).
  const now = Date.now();
  if (now > clock.msecs) {
    clock.msecs = now;
    clock.seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
  } else {
    clock.seq = (clock.seq + 1) | 0;
    if (clock.seq === 0) clock.msecs++;
  }
  return uuidv7({ random, msecs: clock.msecs, seq: clock.seq });
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
