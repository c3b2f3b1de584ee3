/**
 * Line, word and character counts of UTF-8 text that arrives in chunks of any size: the
 * text is never held whole, only the word counts (one entry per distinct word) and the
 * unfinished word at the end of the last chunk.
 */

/** Bytes that are not UTF-8 text (invalid sequences, or NUL as binary files have). */
export class NotTextError extends Error {}

export interface TextSummary {
  bytes: number;
  /** Lines of text: newlines, plus a last line that has none. */
  lines: number;
  /** Runs of letters and digits (with apostrophes inside, as in "don't"). */
  words: number;
  /** Unicode code points. */
  characters: number;
  distinctWords: number;
  /** Every word (lower case) with its count, the most frequent first, ties in alphabetical order. */
  wordCounts: [word: string, count: number][];
}

const wordPattern = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;
/** The end of a chunk that may continue into the next one as part of a word. */
const openWordTail = /[\p{L}\p{N}'’]+$/u;
/** A "word" longer than this is counted in pieces rather than held until it ends. */
const maxCarriedCharacters = 4096;

export class TextStatistics {
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  readonly #wordCounts = new Map<string, number>();
  #bytes = 0;
  #newlines = 0;
  #characters = 0;
  #words = 0;
  #lastCharacter = '';
  #carry = '';

  /** Counts the next bytes; throws NotTextError on bytes that are not text. */
  add(chunk: Uint8Array): void {
    let text: string;
    try {
      text = this.#decoder.decode(chunk, { stream: true });
    } catch {
      throw new NotTextError(`byte ${this.#bytes} onwards is not UTF-8 text`);
    }
    this.#count(text, chunk.byteLength);
    const tail = this.#carry + text;
    const open = openWordTail.exec(tail);
    const cut = open && open[0].length <= maxCarriedCharacters ? open.index : tail.length;
    this.#countWords(tail.slice(0, cut));
    this.#carry = tail.slice(cut);
  }

  finish(): TextSummary {
    let rest: string;
    try {
      rest = this.#decoder.decode();
    } catch {
      throw new NotTextError('the text ends inside a UTF-8 sequence');
    }
    this.#count(rest, 0);
    this.#countWords(this.#carry + rest);
    this.#carry = '';
    const wordCounts = [...this.#wordCounts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
    return {
      bytes: this.#bytes,
      lines: this.#newlines + (this.#lastCharacter !== '' && this.#lastCharacter !== '\n' ? 1 : 0),
      words: this.#words,
      characters: this.#characters,
      distinctWords: wordCounts.length,
      wordCounts,
    };
  }

  #count(text: string, byteLength: number): void {
    this.#bytes += byteLength;
    for (let i = 0; i < text.length; i++) {
      const unit = text.charCodeAt(i);
      if (unit === 0) throw new NotTextError(`byte ${this.#bytes - byteLength} onwards holds NUL characters: not text`);
      if (unit === 10) this.#newlines++;
      // A code point above U+FFFF is two UTF-16 units: count the first only.
      if (unit < 0xdc00 || unit > 0xdfff) this.#characters++;
    }
    if (text.length > 0) this.#lastCharacter = text[text.length - 1]!;
  }

  #countWords(text: string): void {
    for (const [word] of text.matchAll(wordPattern)) {
      const key = word.toLowerCase();
      this.#words++;
      this.#wordCounts.set(key, (this.#wordCounts.get(key) ?? 0) + 1);
    }
  }
}
