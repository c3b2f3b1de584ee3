import { describe, expect, test } from 'vitest';
import { NotTextError, TextStatistics } from './text-statistics.ts';

function summarize(bytes: Uint8Array, chunkSize: number) {
  const statistics = new TextStatistics();
  for (let at = 0; at < bytes.byteLength; at += chunkSize) statistics.add(bytes.subarray(at, at + chunkSize));
  return statistics.finish();
}

describe('TextStatistics', () => {
  const text = "Don't panic, don't PANIC!\nnaïve café — 42 cafés\n😀 emoji line\nlast line without newline";
  const bytes = new TextEncoder().encode(text);

  test('counts lines, words (apostrophes inside), code points and word frequencies', () => {
    const summary = summarize(bytes, bytes.byteLength);
    expect(summary).toMatchObject({ bytes: bytes.byteLength, lines: 4, words: 14, characters: [...text].length, distinctWords: 11 });
    expect(summary.wordCounts.slice(0, 3)).toEqual([
      ["don't", 2],
      ['line', 2],
      ['panic', 2],
    ]);
  });

  test('gives the same answer whatever the chunk boundaries (inside words, apostrophes and UTF-8 sequences)', () => {
    const whole = summarize(bytes, bytes.byteLength);
    for (const size of [1, 2, 3, 5, 7, 13]) expect(summarize(bytes, size)).toEqual(whole);
  });

  test('a trailing newline ends the last line; empty text has none', () => {
    expect(summarize(new TextEncoder().encode('a\nb\n'), 1).lines).toBe(2);
    expect(summarize(new Uint8Array(), 1)).toMatchObject({ lines: 0, words: 0, characters: 0 });
  });

  test('bytes that are not UTF-8 text, or hold NUL, are NotTextError', () => {
    expect(() => summarize(Uint8Array.of(0x61, 0xff, 0x62), 1)).toThrow(NotTextError);
    expect(() => summarize(Uint8Array.of(0x89, 0x50, 0x4e, 0x47), 4)).toThrow(NotTextError);
    expect(() => summarize(Uint8Array.of(0x61, 0x00, 0x62), 3)).toThrow(NotTextError);
    // Cut off inside a two-byte sequence.
    expect(() => summarize(Uint8Array.of(0x61, 0xc3), 2)).toThrow(NotTextError);
  });
});
