import { fileTypeFromBuffer } from 'file-type';

/** Bytes of a file's start that content sniffing looks at. */
export const sniffSampleBytes = 4100;

/**
 * Text types a client may name for text it sends: ones no browser runs. Markup and
 * scripts (HTML, SVG, XML, JavaScript) are never taken from the claim, only sniffed.
 */
const inertTextTypes = new Set([
  'text/plain',
  'text/csv',
  'text/tab-separated-values',
  'text/markdown',
  'text/x-log',
  'application/json',
  'application/x-ndjson',
  'application/yaml',
  'application/x-yaml',
  'text/yaml',
  'application/toml',
  'application/sql',
]);

/**
 * The content type of a file from its first bytes: magic numbers first; failing that,
 * text (valid UTF-8 without NUL bytes) that starts like markup is HTML, SVG or XML,
 * other text is the client's claim when that names an inert text type, else
 * `text/plain`; anything else is `application/octet-stream`. The client's claim alone
 * never decides a binary or an active type.
 */
export async function sniffContentType(sample: Uint8Array, claimed: string): Promise<string> {
  const detected = await fileTypeFromBuffer(sample);
  // An SVG image is XML that browsers run scripts in: it must not pass as plain XML.
  if (detected?.mime === 'application/xml') return sniffMarkup(new TextDecoder().decode(sample)) ?? detected.mime;
  if (detected) return detected.mime;
  if (!looksLikeText(sample)) return 'application/octet-stream';
  const markup = sniffMarkup(new TextDecoder().decode(sample));
  if (markup) return markup;
  const claim = claimed.split(';')[0]!.trim().toLowerCase();
  return inertTextTypes.has(claim) ? claim : 'text/plain';
}

const htmlStart = /^<(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p)(?:[\s>]|$)|^<!--/i;

/** The type of text that opens like markup (the WHATWG sniffing rules, in short). */
function sniffMarkup(text: string): string | undefined {
  const start = text.replace(/^\uFEFF/, '').trimStart();
  if (htmlStart.test(start)) return 'text/html';
  if (/^<svg[\s>]/i.test(start)) return 'image/svg+xml';
  if (/^<\?xml[\s?]/i.test(start)) return /<svg[\s>]/i.test(start) ? 'image/svg+xml' : 'application/xml';
  return undefined;
}

function looksLikeText(sample: Uint8Array): boolean {
  if (sample.includes(0)) return false;
  try {
    // A sample can end inside a multi-byte character: judge all but its last 3 bytes.
    new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, Math.max(0, sample.length - 3)));
    return true;
  } catch {
    return false;
  }
}

/** Whether `contentType` matches one of the patterns (`image/png`, `image/*`); an empty list allows any. */
export function isAllowedContentType(contentType: string, allowed: string[]): boolean {
  if (allowed.length === 0) return true;
  return allowed.some((pattern) => (pattern.endsWith('/*') ? contentType.startsWith(pattern.slice(0, -1)) : contentType === pattern));
}
