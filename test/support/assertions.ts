/**
 * Helpers the test files share that need no server: calls that must fail and the
 * details of their errors, polling and waiting, and unique names.
 */
import { randomBytes } from 'node:crypto';
import { Code, ConnectError } from '@connectrpc/connect';
import { expect } from 'vitest';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';

// ---------------------------------------------------------------------------------------
// Calls that must fail

/** A call to make (`() => client.method(...)`), or the promise of one already made. */
export type CallOrPromise = (() => Promise<unknown>) | Promise<unknown>;

/** Runs the call (or awaits the promise), which must fail with a ConnectError; returns that error. */
export async function connectErrorOf(callOrPromise: CallOrPromise): Promise<ConnectError> {
  let outcome: unknown;
  try {
    outcome = await (typeof callOrPromise === 'function' ? callOrPromise() : callOrPromise);
  } catch (error) {
    expect(error).toBeInstanceOf(ConnectError);
    return error as ConnectError;
  }
  throw new Error(
    `expected the call to fail, but it succeeded with ${JSON.stringify(outcome, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))}`,
  );
}

/** The call's ConnectError, after checking its code and, when given, its ErrorInfo reason. */
export async function expectConnectError(callOrPromise: CallOrPromise, code: Code, reason?: string): Promise<ConnectError> {
  const error = await connectErrorOf(callOrPromise);
  expect(Code[error.code], `expected ${Code[code]}, got ${Code[error.code]}: ${error.rawMessage}`).toBe(Code[code]);
  if (reason !== undefined) expect(reasonOf(error), `ErrorInfo reason of ${Code[error.code]}: ${error.rawMessage}`).toBe(reason);
  return error;
}

// ---------------------------------------------------------------------------------------
// Error details

/** The reason of the error's first ErrorInfo detail, if it has one. */
export function reasonOf(error: ConnectError): string | undefined {
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}

/** Field paths named by the error's BadRequest details, in order. */
export function violatedFields(error: ConnectError): string[] {
  return error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((violation) => violation.field));
}

/** The retry delay of the error's RetryInfo detail, in milliseconds; fails when there is none. */
export function retryDelayMs(error: ConnectError): number {
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (!delay) throw new Error(`no RetryInfo detail on: ${error.message}`);
  return Number(delay.seconds) * 1000 + delay.nanos / 1_000_000;
}

// ---------------------------------------------------------------------------------------
// Polling

/** Retries `check` until it passes or `timeoutMs` has gone by; the last failure is rethrown. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 1000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

/**
 * Polls `condition` every 20 ms until it holds or `timeoutMs` has gone by, and returns
 * whether it held. Unlike `eventually` it never fails by itself: the caller asserts on
 * what it then sees.
 */
export async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  let held = condition();
  while (!held && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    held = condition();
  }
  return held;
}

/** Resolves to the promise's value, or 'timeout' when it has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------
// Unique names

/** `bytes` random bytes, in hex. */
export function randomHex(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

/** A name no other test uses: `prefix-` and 8 random hex digits. */
export function uniqueName(prefix = 'user'): string {
  return `${prefix}-${randomHex()}`;
}
