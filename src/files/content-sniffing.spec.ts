import { expect, test } from 'vitest';
import { sniffContentType } from './content-sniffing.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

test.each([
  ['plain text, claimed CSV', 'a,b\n1,2\n', 'text/csv', 'text/csv'],
  ['plain text, claimed JSON with a charset', '{"a": 1}', 'application/json; charset=utf-8', 'application/json'],
  ['plain text, no claim', 'hello\n', '', 'text/plain'],
  ['plain text, claimed HTML', 'just words\n', 'text/html', 'text/plain'],
  ['plain text, claimed JavaScript', 'alert(1)\n', 'application/javascript', 'text/plain'],
  ['plain text, claimed SVG', 'not a picture\n', 'image/svg+xml', 'text/plain'],
  ['an HTML page, claimed plain text', '<!DOCTYPE html><html><script>alert(1)</script>', 'text/plain', 'text/html'],
  ['an HTML fragment after blanks and a BOM', '\uFEFF\n  <script>alert(1)</script>', 'text/csv', 'text/html'],
  ['an HTML comment', '<!-- hi -->', 'text/plain', 'text/html'],
  ['an SVG image', '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 'text/plain', 'image/svg+xml'],
  ['an SVG image with an XML declaration', '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', 'application/json', 'image/svg+xml'],
  ['an XML document', '<?xml version="1.0"?><feed/>', 'text/plain', 'application/xml'],
  ['text that only mentions a tag later', 'see <script> in the docs', 'text/markdown', 'text/markdown'],
])('%s', async (_title, content, claim, expected) => {
  expect(await sniffContentType(bytes(content), claim)).toBe(expected);
});

test('magic numbers win over any claim; bytes that are not UTF-8 are octet-stream', async () => {
  expect(await sniffContentType(new Uint8Array([0x25, 0x50, 0x44, 0x46, 0x2d, 0x31, 0x2e, 0x34, 0x0a]), 'text/plain')).toBe('application/pdf');
  expect(await sniffContentType(new Uint8Array([0xff, 0xfe, 0x00, 0x41, 0x80, 0x81, 0x82, 0x83]), 'text/plain')).toBe('application/octet-stream');
});
