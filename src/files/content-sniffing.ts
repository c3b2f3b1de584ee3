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
  if (detected?.mime === 'application/xml') return sniffMarkup(decodeMarkup(sample)) ?? detected.mime;
  if (detected) return detected.mime;
  if (!looksLikeText(sample)) return 'application/octet-stream';
  const markup = sniffMarkup(new TextDecoder().decode(sample));
  if (markup) return markup;
  const claim = claimed.split(';')[0]!.trim().toLowerCase();
  return inertTextTypes.has(claim) ? claim : 'text/plain';
}

const htmlStart = /^<(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p)(?:[\s>]|$)|^<!--/i;

const activeNamespaces = new Map([
  ['http://www.w3.org/1999/xhtml', 'text/html'],
  ['http://www.w3.org/2000/svg', 'image/svg+xml'],
]);

/**
 * The type of text that opens like markup (the WHATWG sniffing rules, in short, plus
 * XML namespaces).
 *
 * Browsers render an element of the XHTML or SVG namespace as such wherever it sits in
 * an XML document, whatever its prefix (`<s:svg xmlns:s="...svg">`, an `<h:script>`
 * deep inside a feed), so any markup that binds one of those namespaces is HTML or SVG:
 * the root element's namespace decides when it is one of them, else the first such
 * namespace in the sample. Character references are decoded first (they can spell a
 * namespace), and markup whose namespaces cannot be told from its text (entities or
 * attribute defaults declared in a DTD, an `xmlns` made of entity references) or that
 * names an XSLT stylesheet (which turns any XML into HTML) is HTML too.
 */
function sniffMarkup(text: string): string | undefined {
  const start = text.replace(/^\uFEFF/, '').trimStart();
  if (htmlStart.test(start)) return 'text/html';
  if (start.startsWith('<')) {
    const namespaced = sniffNamespaces(start);
    if (namespaced) return namespaced;
  }
  if (/^<svg[\s/>]/i.test(start)) return 'image/svg+xml';
  if (/^<\?xml[\s?]/i.test(start)) return /<svg[\s/>]/i.test(start) ? 'image/svg+xml' : 'application/xml';
  return undefined;
}

function sniffNamespaces(markup: string): string | undefined {
  if (/<!(?:ENTITY|ATTLIST)[\s>]/i.test(markup) || /<\?xml-stylesheet[\s?]/i.test(markup)) return 'text/html';
  const declarations = markup.matchAll(/\sxmlns(?::[^\s=/>]+)?\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g);
  if ([...declarations].some((match) => /&(?!#\d+;|#x[0-9a-fA-F]+;|amp;|lt;|gt;|quot;|apos;)/.test(match[1] ?? match[2] ?? '')))
    return 'text/html';
  // The root is the first element after the prolog; it has no ancestors, so its own
  // declarations are all that can bind its prefix (or the default namespace).
  const root = /<([A-Za-z_][^\s/>]*)([^>]*)>?/.exec(markup.replace(/<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<![^>]*>/g, ''));
  if (root) {
    const prefix = root[1]!.includes(':') ? root[1]!.slice(0, root[1]!.indexOf(':')) : '';
    const binding = [...root[2]!.matchAll(/(?:^|\s)xmlns(?::([^\s=/>]+))?\s*=\s*(?:"([^"]*)"|'([^']*)')/g)].find(
      (match) => (match[1] ?? '') === prefix,
    );
    const rootType = activeNamespaces.get(decodeReferences(binding?.[2] ?? binding?.[3] ?? ''));
    if (rootType) return rootType;
  }
  const decoded = decodeReferences(markup);
  let first: { at: number; type: string } | undefined;
  for (const [namespace, type] of activeNamespaces) {
    const at = decoded.indexOf(namespace);
    if (at !== -1 && (!first || at < first.at)) first = { at, type };
  }
  return first?.type;
}

const predefinedEntities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Character references and XML's predefined entities, resolved (others stay as they are). */
function decodeReferences(text: string): string {
  return text.replace(
    /&(?:#(\d+)|#x([0-9a-fA-F]+)|(amp|lt|gt|quot|apos));/g,
    (reference, decimal?: string, hex?: string, name?: string) => {
      if (name) return predefinedEntities[name] ?? reference;
      const codePoint = Number.parseInt(decimal ?? hex!, decimal ? 10 : 16);
      return codePoint <= 0x10ffff ? String.fromCodePoint(codePoint) : reference;
    },
  );
}

/** Text of an XML sample in the encoding its byte order mark names (UTF-16 XML is XML to browsers too). */
function decodeMarkup(sample: Uint8Array): string {
  const encoding = sample[0] === 0xfe && sample[1] === 0xff ? 'utf-16be' : sample[0] === 0xff && sample[1] === 0xfe ? 'utf-16le' : 'utf-8';
  return new TextDecoder(encoding).decode(sample);
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
