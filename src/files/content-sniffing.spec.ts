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
  [
    'an SVG image with an XML declaration',
    '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    'application/json',
    'image/svg+xml',
  ],
  ['an XML document', '<?xml version="1.0"?><feed/>', 'text/plain', 'application/xml'],
  ['text that only mentions a tag later', 'see <script> in the docs', 'text/markdown', 'text/markdown'],
  [
    'an XML document of another namespace',
    '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>',
    'text/plain',
    'application/xml',
  ],
  // Namespaces decide, not prefixes.
  [
    'SVG under a prefix',
    '<s:svg xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></s:svg>',
    'text/plain',
    'image/svg+xml',
  ],
  [
    'SVG under a prefix, after an XML declaration',
    '<?xml version="1.0"?>\n<s:svg xmlns:s="http://www.w3.org/2000/svg"/>',
    'text/plain',
    'image/svg+xml',
  ],
  [
    'XHTML under a prefix',
    '<?xml version="1.0"?><h:html xmlns:h="http://www.w3.org/1999/xhtml"><h:script>alert(1)</h:script></h:html>',
    'text/plain',
    'text/html',
  ],
  [
    'XHTML as the default namespace of an unknown-looking root',
    '<?xml version="1.0"?><page xmlns="http://www.w3.org/1999/xhtml"/>',
    'text/plain',
    'text/html',
  ],
  [
    'an XHTML script nested in another XML document',
    '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script></feed>',
    'text/plain',
    'text/html',
  ],
  [
    'an SVG element nested in another XML document',
    '<?xml version="1.0"?><data><v:svg xmlns:v="http://www.w3.org/2000/svg" onload="alert(1)"/></data>',
    'text/plain',
    'image/svg+xml',
  ],
  [
    'a root bound to SVG with XHTML inside: the root decides',
    '<?xml version="1.0"?><g:svg xmlns:g="http://www.w3.org/2000/svg"><g:foreignObject><div xmlns="http://www.w3.org/1999/xhtml"/></g:foreignObject></g:svg>',
    '',
    'image/svg+xml',
  ],
  [
    'an SVG prefix bound to another namespace is not SVG',
    '<?xml version="1.0"?><svg:doc xmlns:svg="urn:example:not-svg"/>',
    'text/plain',
    'application/xml',
  ],
  [
    'a namespace spelled with character references',
    '<?xml version="1.0"?><s:svg xmlns:s="http://www.w3.org/2000/&#115;v&#x67;"/>',
    'text/plain',
    'image/svg+xml',
  ],
  ['a namespace made of entity references', '<?xml version="1.0"?><s:svg xmlns:s="&ns;"/>', 'text/plain', 'text/html'],
  [
    'entities declared in a DTD',
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "http://www.w3.org/2000/">]><d/>',
    'text/plain',
    'text/html',
  ],
  [
    'namespace defaults declared in a DTD',
    '<?xml version="1.0"?><!DOCTYPE d [<!ATTLIST d xmlns CDATA #FIXED "urn:x">]><d/>',
    'text/plain',
    'text/html',
  ],
  [
    'an XSLT stylesheet (it can turn any XML into HTML)',
    '<?xml version="1.0"?><?xml-stylesheet type="text/xsl" href="t.xsl"?><d/>',
    'text/plain',
    'text/html',
  ],
  [
    'markup without an XML declaration that binds XHTML',
    '<d xmlns:h="http://www.w3.org/1999/xhtml"><h:img src="x" onerror="alert(1)"/></d>',
    'application/json',
    'text/html',
  ],
  [
    'an SVG doctype before the root',
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg xmlns="http://www.w3.org/2000/svg"/>',
    'text/csv',
    'image/svg+xml',
  ],
])('%s', async (_title, content, claim, expected) => {
  expect(await sniffContentType(bytes(content), claim)).toBe(expected);
});

test('XML in UTF-16 (named by its byte order mark) is read as UTF-16: a prefixed SVG root is still SVG', async () => {
  const svg = '<?xml version="1.0" encoding="UTF-16"?><s:svg xmlns:s="http://www.w3.org/2000/svg"/>';
  const littleEndian = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(svg, 'utf16le')]);
  const bigEndian = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(svg, 'utf16le').swap16()]);
  expect(await sniffContentType(littleEndian, 'text/plain')).toBe('image/svg+xml');
  expect(await sniffContentType(bigEndian, 'text/plain')).toBe('image/svg+xml');
});

test('magic numbers win over any claim; bytes that are not UTF-8 are octet-stream', async () => {
  expect(await sniffContentType(new Uint8Array([0x25, 0x50, 0x44, 0x46, 0x2d, 0x31, 0x2e, 0x34, 0x0a]), 'text/plain')).toBe(
    'application/pdf',
  );
  expect(await sniffContentType(new Uint8Array([0xff, 0xfe, 0x00, 0x41, 0x80, 0x81, 0x82, 0x83]), 'text/plain')).toBe(
    'application/octet-stream',
  );
});
