import { expect, test } from 'vitest';
import { formatDuration, parseDuration } from './durations.ts';

test.each([
  ['500ms', 500],
  ['10s', 10_000],
  ['15m', 900_000],
  ['1h30m', 5_400_000],
  ['7d', 604_800_000],
  ['0s', 0],
])('parses %s', (text, ms) => {
  expect(parseDuration(text)).toBe(ms);
  expect(parseDuration(formatDuration(ms))).toBe(ms);
});

test.each(['', '15', 'm', '1.5h', '-1s', '10 s', '1w', '99999999999999999999d'])('rejects %j', (text) => {
  expect(parseDuration(text)).toBeUndefined();
});

test('formats largest units first', () => {
  expect(formatDuration(5_400_000)).toBe('1h30m');
  expect(formatDuration(1_500)).toBe('1s500ms');
});
