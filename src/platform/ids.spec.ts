import { validate, version } from 'uuid';
import { expect, test } from 'vitest';
import { newId } from './ids.ts';

test('new ids are v7 UUIDs, unique, and in creation order even within one millisecond', () => {
  const ids = Array.from({ length: 20_000 }, () => newId());
  for (const id of [ids[0]!, ids[4095]!, ids[4096]!, ids.at(-1)!]) {
    expect(validate(id)).toBe(true);
    expect(version(id)).toBe(7);
  }
  expect(new Set(ids).size).toBe(ids.length);
  // Many ids share a millisecond here: the counter keeps them in order.
  expect(ids.every((id, index) => index === 0 || id > ids[index - 1]!)).toBe(true);
  // Their time is now.
  const msecs = Number.parseInt(ids.at(-1)!.replaceAll('-', '').slice(0, 12), 16);
  expect(Math.abs(msecs - Date.now())).toBeLessThan(60_000);
});
