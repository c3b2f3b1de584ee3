import { expect, test } from 'vitest';
import { cleanFileName, normalizeDirectory } from './file-paths.ts';

test('names are cut to 255 bytes of whole characters', () => {
  expect(cleanFileName('a'.repeat(300))).toBe('a'.repeat(255));
  const cut = cleanFileName('é'.repeat(200));
  expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(255);
  expect(cut).toBe('é'.repeat(127));
  expect(cleanFileName(`${'😀'.repeat(100)}.txt`)).toBe('😀'.repeat(63));
});

test('leading and trailing dots and spaces go, inner ones stay', () => {
  expect(cleanFileName(' ..report. v2 .. ')).toBe('report. v2');
  expect(cleanFileName('. . .')).toBe('');
});

test('huge names and directories are handled in linear time (quadratic cleaning of 8 million characters would not end within the test timeout)', () => {
  expect(cleanFileName('a'.repeat(8_000_000))).toBe('a'.repeat(255));
  expect(cleanFileName(`x${'. '.repeat(4_000_000)}x`)).toMatch(/^x/);
  expect(normalizeDirectory(`/${'d'.repeat(8_000_000)}`)).toBeUndefined();
  expect(normalizeDirectory(`/${'a/'.repeat(20)}`)).toBe(`/${Array(20).fill('a').join('/')}`);
});
