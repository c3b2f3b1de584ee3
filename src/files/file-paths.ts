/**
 * File names and directories as people write them, made safe: no path separators,
 * control characters, `.`/`..` segments, leading or trailing dots and spaces, or names
 * that Windows reserves. Cleaning keeps what it can of the intended name rather than
 * refusing it; a name with nothing left is refused by the caller.
 */

const reservedNames = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const unsafeCharacters = /[\u0000-\u001f\u007f/\\:*?"<>|]/g;
const maxNameBytes = 255;
const maxDirectoryLength = 1024;
const maxDepth = 32;

export const rootDirectory = '/';

/** The cleaned name; empty when nothing usable is left. */
export function cleanFileName(name: string): string {
  let cleaned = name.normalize('NFC').replace(unsafeCharacters, '_').replace(/\s+/g, ' ').trim();
  cleaned = cleaned.replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');
  if (cleaned === '' || /^_+$/.test(cleaned)) return '';
  if (reservedNames.test(cleaned)) cleaned = `_${cleaned}`;
  while (Buffer.byteLength(cleaned) > maxNameBytes) cleaned = [...cleaned].slice(0, -1).join('');
  return cleaned;
}

/**
 * `/`-separated directory with each segment cleaned like a file name and `.`, `..` and
 * empty segments dropped; `/` for the root. Undefined when it is too long or too deep.
 */
export function normalizeDirectory(directory: string): string | undefined {
  const segments = directory
    .replace(/\\/g, '/')
    .split('/')
    .map((segment) => cleanFileName(segment))
    .filter((segment) => segment !== '');
  if (segments.length > maxDepth) return undefined;
  const normalized = `/${segments.join('/')}`;
  return normalized.length > maxDirectoryLength ? undefined : normalized;
}
