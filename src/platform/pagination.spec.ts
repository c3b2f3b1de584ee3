import { expect, test } from 'vitest';
import { DomainError } from './domain-errors.ts';
import { decodePageToken, effectivePageSize, encodePageToken } from './pagination.ts';

function violationOf(run: () => unknown) {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    return (error as DomainError).violations[0];
  }
  throw new Error('expected an error');
}

test('page size follows AIP-158', () => {
  expect(effectivePageSize(0)).toBe(50);
  expect(effectivePageSize(10)).toBe(10);
  expect(effectivePageSize(5000)).toBe(1000);
  expect(violationOf(() => effectivePageSize(-1))?.field).toBe('page_size');
});

test('a token round-trips for the same query only', () => {
  const token = encodePageToken('cursor-1', ['users', 'alice']);
  expect(decodePageToken(token, ['users', 'alice'])).toBe('cursor-1');
  expect(decodePageToken('', ['users'])).toBeUndefined();
  expect(violationOf(() => decodePageToken(token, ['users', 'bob']))?.description).toMatch(/different query/);
});

test('garbage tokens are InvalidArgument on page_token', () => {
  for (const garbage of ['%%%', 'bm90IGpzb24', Buffer.from('{"c":1}').toString('base64url')]) {
    expect(violationOf(() => decodePageToken(garbage, []))?.field).toBe('page_token');
  }
});
