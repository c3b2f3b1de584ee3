/**
 * File names and directories as people write them, made safe: no path separators,
 * control characters, `.`/`..` segments, leading or trailing dots and spaces, or names
 * that Windows reserves. Cleaning keeps what it can of the intended name rather than
 * refusing it; a name with nothing left is refused by the caller.
 */

const reservedNames = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this removes.
const unsafeCharacters = /[\u0000-\u001f\u007f/\\:*?"<>|]/g;
const maxNameBytes = 255;
const maxDirectoryLength = 1024;
const maxDepth = 32;

export const rootDirectory = '/';

/**
 * Input beyond this cannot be part of a valid name (255 bytes); it is cut before
 * cleaning so that cleaning stays linear in what is kept.
 */
const maxNameInput = 1024;
/** A directory given longer than this is refused as too long without being cleaned. */
const maxDirectoryInput = 16 * 1024;

/** The cleaned name; empty when nothing usable is left. */
export function cleanFileName(name: string): string {
  let cleaned = name.slice(0, maxNameInput).normalize('NFC').replace(unsafeCharacters, '_').replace(/\s+/g, ' ');
  cleaned = trimDotsAndSpaces(cleaned);
  if (cleaned === '' || /^_+$/.test(cleaned)) return '';
  if (reservedNames.test(cleaned)) cleaned = `_${cleaned}`;
  return truncateUtf8(cleaned, maxNameBytes);
}

/** Without leading or trailing dots and white space (a loop: no regex backtracking). */
function trimDotsAndSpaces(text: string): string {
  const trimmable = (char: string) => char === '.' || /\s/.test(char);
  let start = 0;
  let end = text.length;
  while (start < end && trimmable(text[start]!)) start++;
  while (end > start && trimmable(text[end - 1]!)) end--;
  return text.slice(start, end);
}

/** The longest prefix of whole characters that fits in `maxBytes` of UTF-8. */
function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    bytes += Buffer.byteLength(char);
    if (bytes > maxBytes) break;
    end += char.length;
  }
  return text.slice(0, end);
}

/**
 * `/`-separated directory with each segment cleaned like a file name and `.`, `..` and
 * empty segments dropped; `/` for the root. Undefined when it is too long or too deep.
 */
export function normalizeDirectory(directory: string): string | undefined {
  if (directory.length > maxDirectoryInput) return undefined;
  const segments = directory
    .replace(/\\/g, '/')
    .split('/')
    .map((segment) => cleanFileName(segment))
    .filter((segment) => segment !== '');
  if (segments.length > maxDepth) return undefined;
  const normalized = `/${segments.join('/')}`;
  return normalized.length > maxDirectoryLength ? undefined : normalized;
}
